// Declarations only; see cpp/gloo_decls/README.md in sevit-distill.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {
// Base of ProcessGroupGloo::GlooStore (an inline helper the bridge never instantiates): the
// virtual functions GlooStore overrides when GLOO_STORE_HAS_STORE_V2 is not defined.
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};
} // namespace rendezvous
} // namespace gloo
