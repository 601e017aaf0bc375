// Included by each generated kernel translation unit after every system header and right
// before the kernel source: the CUDA keywords that would clash with system headers (glibc and
// libstdc++ write __attribute__((__noinline__))).
#pragma once

#define __noinline__ __attribute__((noinline))
