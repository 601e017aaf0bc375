// "Device" memory of the stand-in driver: host memory from a checked allocator.
//
// Every allocation gets its own mapping, placed so that its last byte is followed by a
// PROT_NONE guard page (a kernel reading or writing one element past the end faults at once)
// and preceded by one. Fresh memory is filled with 0xff bytes (NaN as f32), as a kernel must
// not rely on what cuMemAlloc returns. Freed allocations stay mapped PROT_NONE in a
// quarantine for a while, so a use after free faults too; the fault handler (executor.cpp)
// names the allocation. Copies and kernel pointer arguments are checked against the table of
// live allocations.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace jg_emu {

/// One allocation, live or freed.
struct Allocation {
    uint64_t id = 0;
    uintptr_t start = 0;  // device address = host address of the first byte
    size_t size = 0;      // bytes requested
    void* mapping = nullptr;
    size_t mapping_size = 0;
    bool live = false;
};

/// What an address is, as far as the allocator knows.
struct AddressInfo {
    enum Kind { Unknown, Live, GuardAfter, GuardBefore, Freed } kind = Unknown;
    Allocation alloc;   // the allocation concerned (for guards: the nearest one)
    intptr_t offset = 0;  // address - alloc.start
};

/// Allocate `bytes` (≥ 1) of device memory; 0 when the emulated device is full or mmap fails.
uintptr_t device_alloc(size_t bytes);
/// Free a live allocation by its start address; false when `ptr` is not one.
bool device_free(uintptr_t ptr);
/// The live allocation containing [ptr, ptr + bytes), if any.
bool device_range(uintptr_t ptr, size_t bytes, Allocation* out);
/// Classify an address (for fault reports and argument checks).
AddressInfo device_classify(uintptr_t addr);
/// Bytes in live allocations, and the emulated device's capacity.
size_t device_bytes_in_use();
size_t device_capacity();
/// Describe an address for a diagnostic ("allocation #12 (4096 bytes) + 4100: 4 bytes past its end").
std::string device_describe(uintptr_t addr);
/// Live allocations overlapping the given pointer values (each pointer: the allocation that
/// contains it), de-duplicated; used to snapshot a launch's memory.
std::vector<Allocation> device_allocations_of(const std::vector<uintptr_t>& ptrs);

}  // namespace jg_emu
