// Reading the PTX that jetgen hands to cuModuleLoadData: its ISA version, target and the
// `.entry` points with their parameter lists. The executor does not interpret PTX; each entry
// is matched by name to the kernel compiled from the same kernels/*.cu source, and its
// parameter list (count, sizes, alignments) must equal the compiled signature's, so the
// parameter buffers of cuLaunchKernel are decoded exactly as nvcc lays them out.
#pragma once

#include <stddef.h>

#include <string>
#include <vector>

namespace jg_emu {

/// One `.param` of an entry: bytes and alignment.
struct PtxParam {
    size_t size = 0;
    size_t align = 0;
    std::string text;  // as written, for messages
};

/// One `.entry`.
struct PtxEntry {
    std::string name;
    std::vector<PtxParam> params;
};

/// A parsed module.
struct PtxModule {
    int version_major = 0, version_minor = 0;  // `.version 8.8`
    std::string target;                        // `.target sm_90`
    std::vector<PtxEntry> entries;
};

/// Parse `text`; false (with `error` set) when it is not PTX this driver can load.
bool parse_ptx(const char* text, PtxModule* out, std::string* error);

}  // namespace jg_emu
