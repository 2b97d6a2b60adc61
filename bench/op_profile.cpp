// Operator-level profile of a libtorch process, loaded with LD_PRELOAD by
// bench/op_profile.py (`scripts/bench.sh --op-profile`).
// Registers a global RecordFunction callback that times every aten operator, autograd node and
// user scope (PyTorch's `Optimizer.step#AdamW.step`, say) on the thread that runs it, and at
// exit writes one CSV line per name (calls, self and total milliseconds; self excludes the
// operators it called) to the path in $SEVIT_OP_PROFILE.
// Nothing happens when that variable is unset. $SEVIT_OP_PROFILE_AFTER=NAME:K starts counting
// when operator NAME has finished K times (the warm-up's last optimiser step, say).
#include <ATen/record_function.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Totals {
  double self_ns = 0;
  double total_ns = 0;
  long calls = 0;
};

struct Open {
  std::string name;
  std::chrono::steady_clock::time_point start;
  double children_ns = 0;
};

std::mutex totals_mutex;
std::map<std::string, Totals> totals;
thread_local std::vector<Open> open_ops;
std::string start_after_op;
long start_after_calls = 0;
long start_after_seen = 0;
bool counting = true;

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  open_ops.push_back({fn.name(), std::chrono::steady_clock::now(), 0});
  return nullptr;
}

void on_exit(const at::RecordFunction&, at::ObserverContext*) {
  if (open_ops.empty()) return;
  Open op = std::move(open_ops.back());
  open_ops.pop_back();
  double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - op.start).count();
  if (!open_ops.empty()) open_ops.back().children_ns += ns;
  std::lock_guard<std::mutex> lock(totals_mutex);
  if (!counting) {
    if (op.name == start_after_op && ++start_after_seen >= start_after_calls) counting = true;
    return;
  }
  Totals& t = totals[op.name];
  t.self_ns += ns - op.children_ns;
  t.total_ns += ns;
  t.calls += 1;
}

void write_csv() {
  const char* path = std::getenv("SEVIT_OP_PROFILE");
  FILE* out = std::fopen(path, "w");
  if (!out) {
    std::fprintf(stderr, "op_profile: cannot write %s\n", path);
    return;
  }
  std::fprintf(out, "op,calls,self_ms,total_ms\n");
  std::lock_guard<std::mutex> lock(totals_mutex);
  for (const auto& [name, t] : totals) {
    std::string quoted = "\"";
    for (char c : name) quoted += (c == '"') ? std::string("\"\"") : std::string(1, c);
    quoted += "\"";
    std::fprintf(out, "%s,%ld,%.4f,%.4f\n", quoted.c_str(), t.calls, t.self_ns / 1e6, t.total_ns / 1e6);
  }
  std::fclose(out);
}

struct Register {
  Register() {
    if (!std::getenv("SEVIT_OP_PROFILE")) return;
    if (const char* after = std::getenv("SEVIT_OP_PROFILE_AFTER")) {
      std::string spec(after);
      auto colon = spec.rfind(':');
      start_after_op = spec.substr(0, colon);
      start_after_calls = colon == std::string::npos ? 1 : std::atol(spec.c_str() + colon + 1);
      counting = start_after_calls <= 0;
    }
    at::addGlobalCallback(at::RecordFunctionCallback(on_enter, on_exit)
                              .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION,
                                       at::RecordScope::USER_SCOPE}));
    std::atexit(write_csv);
  }
} register_callback;

}  // namespace
