// The one error convention of sevit's C entry points: every call that can fail takes
// `char* err, size_t err_len`, writes a NUL-terminated message there on failure (truncated to
// the buffer) and returns non-zero (a pointer-returning call returns NULL). Nothing throws
// across the C boundary.
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdio>
#include <exception>

namespace sevit {

// Writes `message` to `err` for the Rust side; returns the C ABI's failure code.
inline int report_message(const char* message, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "%s", message);
  return 1;
}

// Writes the exception's message (libtorch's without its C++ backtrace) to `err`.
inline int report(const std::exception& e, char* err, size_t err_len) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    return report_message(c10->what_without_backtrace(), err, err_len);
  }
  return report_message(e.what(), err, err_len);
}

// Runs `f`, turning any exception into a message in `err`; 0 on success, 1 on failure.
template <class F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    return report(e, err, err_len);
  } catch (...) {
    return report_message("unknown C++ exception", err, err_len);
  }
}

}  // namespace sevit
