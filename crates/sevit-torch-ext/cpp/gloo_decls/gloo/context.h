// Declarations only; see cpp/gloo_decls/README.md in sevit-distill.
#pragma once
#include <chrono>

namespace gloo {
// Used through std::shared_ptr; `setTimeout` is named by an inline member of
// ProcessGroupGloo that the bridge never calls.
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
