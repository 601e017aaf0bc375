// State shared by the stand-in driver (driver.cpp) and the stand-in cuBLAS (cublas.cpp).
#pragma once

#include <string>

namespace jg_emu {

/// Record a failure as the driver does for a faulting kernel: the context is unusable from
/// now on (every later call returns `code`), and `message` becomes the detail that
/// cuGetErrorString appends; it is also printed to stderr.
void set_sticky_error(int code, const std::string& message);
/// The sticky error code (0 while the context is healthy).
int sticky_error();
/// Print a diagnostic and remember it as the detail for `code` (not sticky).
void report(int code, const std::string& message);
/// Note that an API entry point was called (for JETGEN_EMU_REPORT).
void note_call(const char* api);

}  // namespace jg_emu
