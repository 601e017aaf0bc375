// The checked device allocator (see memory.h).
#include "memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>

namespace jg_emu {

namespace {

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

// Quarantine limits: freed mappings stay PROT_NONE (no memory behind them) until either is
// exceeded; then the oldest is unmapped and its addresses may be reused.
constexpr size_t kQuarantineEntries = 4096;
constexpr size_t kQuarantineBytes = size_t(1) << 32;

struct Heap {
    std::mutex mu;
    std::map<uintptr_t, Allocation> by_mapping;  // live and quarantined, keyed by mapping base
    std::deque<uintptr_t> quarantine;            // freed mapping bases, oldest first
    size_t quarantine_bytes = 0;
    size_t in_use = 0;
    uint64_t next_id = 1;
    size_t capacity = 0;
};

Heap& heap() {
    static Heap* h = [] {
        Heap* h = new Heap;
        size_t mb = 8192;
        const char* v = getenv("JETGEN_EMU_MEMORY_MB");
        char* end = nullptr;
        if (v && *v) {
            size_t n = strtoull(v, &end, 10);
            if (*end == 0 && n > 0) mb = n;  // otherwise cuInit reports the setting
        }
        h->capacity = mb << 20;
        return h;
    }();
    return *h;
}

// The allocation whose mapping (guard pages included) contains addr; caller holds the lock.
Allocation* find_mapping(Heap& h, uintptr_t addr) {
    auto it = h.by_mapping.upper_bound(addr);
    if (it == h.by_mapping.begin()) return nullptr;
    --it;
    Allocation& a = it->second;
    return addr < (uintptr_t)a.mapping + a.mapping_size ? &a : nullptr;
}

}  // namespace

uintptr_t device_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    Heap& h = heap();
    std::lock_guard<std::mutex> lock(h.mu);
    if (h.in_use + bytes > h.capacity) return 0;
    size_t page = page_size();
    size_t data_pages = (bytes + page - 1) / page;
    size_t total = (data_pages + 2) * page;
    void* m = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return 0;
    char* data = (char*)m + page;
    if (mprotect(data, data_pages * page, PROT_READ | PROT_WRITE) != 0) {
        munmap(m, total);
        return 0;
    }
    // The last byte of the allocation is the last byte before the trailing guard page.
    uintptr_t start = (uintptr_t)data + data_pages * page - bytes;
    memset((void*)start, 0xff, bytes);
    Allocation a;
    a.id = h.next_id++;
    a.start = start;
    a.size = bytes;
    a.mapping = m;
    a.mapping_size = total;
    a.live = true;
    h.by_mapping[(uintptr_t)m] = a;
    h.in_use += bytes;
    return start;
}

bool device_free(uintptr_t ptr) {
    Heap& h = heap();
    std::lock_guard<std::mutex> lock(h.mu);
    Allocation* found = find_mapping(h, ptr);
    if (!found || !found->live || found->start != ptr) return false;
    Allocation& a = *found;
    a.live = false;
    h.in_use -= a.size;
    // Keep the addresses reserved but inaccessible; give the memory back.
    mprotect(a.mapping, a.mapping_size, PROT_NONE);
    madvise(a.mapping, a.mapping_size, MADV_DONTNEED);
    h.quarantine.push_back((uintptr_t)a.mapping);
    h.quarantine_bytes += a.mapping_size;
    while (h.quarantine.size() > kQuarantineEntries || h.quarantine_bytes > kQuarantineBytes) {
        auto old = h.by_mapping.find(h.quarantine.front());
        h.quarantine.pop_front();
        if (old == h.by_mapping.end()) continue;
        h.quarantine_bytes -= old->second.mapping_size;
        munmap(old->second.mapping, old->second.mapping_size);
        h.by_mapping.erase(old);
    }
    return true;
}

bool device_range(uintptr_t ptr, size_t bytes, Allocation* out) {
    Heap& h = heap();
    std::lock_guard<std::mutex> lock(h.mu);
    const Allocation* found = find_mapping(h, ptr);
    if (!found) return false;
    const Allocation& a = *found;
    if (!a.live || ptr < a.start || ptr - a.start > a.size || bytes > a.size - (ptr - a.start)) return false;
    if (out) *out = a;
    return true;
}

AddressInfo device_classify(uintptr_t addr) {
    Heap& h = heap();
    std::lock_guard<std::mutex> lock(h.mu);
    AddressInfo info;
    const Allocation* a = find_mapping(h, addr);
    if (!a) return info;
    info.alloc = *a;
    info.offset = (intptr_t)(addr - a->start);
    if (!a->live) info.kind = AddressInfo::Freed;
    else if (addr >= a->start + a->size) info.kind = AddressInfo::GuardAfter;
    else if (addr < a->start) info.kind = AddressInfo::GuardBefore;
    else info.kind = AddressInfo::Live;
    return info;
}

size_t device_bytes_in_use() {
    Heap& h = heap();
    std::lock_guard<std::mutex> lock(h.mu);
    return h.in_use;
}

size_t device_capacity() { return heap().capacity; }

std::string device_describe(uintptr_t addr) {
    AddressInfo info = device_classify(addr);
    char buf[256];
    const Allocation& a = info.alloc;
    switch (info.kind) {
    case AddressInfo::Unknown:
        snprintf(buf, sizeof buf, "0x%lx, which is not device memory (no allocation there)", (unsigned long)addr);
        break;
    case AddressInfo::Live:
        snprintf(buf, sizeof buf, "allocation #%lu (%zu bytes) + %ld", (unsigned long)a.id, a.size, (long)info.offset);
        break;
    case AddressInfo::GuardAfter:
        snprintf(buf, sizeof buf, "allocation #%lu (%zu bytes) + %ld: past its end (byte %ld after its last)",
                 (unsigned long)a.id, a.size, (long)info.offset, (long)(info.offset - (intptr_t)a.size) + 1);
        break;
    case AddressInfo::GuardBefore:
        snprintf(buf, sizeof buf, "allocation #%lu (%zu bytes) %ld: %ld bytes before its start", (unsigned long)a.id,
                 a.size, (long)info.offset, -(long)info.offset);
        break;
    case AddressInfo::Freed:
        snprintf(buf, sizeof buf, "freed allocation #%lu (%zu bytes) + %ld: use after free", (unsigned long)a.id,
                 a.size, (long)info.offset);
        break;
    }
    return buf;
}

std::vector<Allocation> device_allocations_of(const std::vector<uintptr_t>& ptrs) {
    std::vector<Allocation> out;
    for (uintptr_t p : ptrs) {
        Allocation a;
        if (!device_range(p, 0, &a)) continue;
        bool seen = false;
        for (const Allocation& b : out) seen = seen || b.id == a.id;
        if (!seen) out.push_back(a);
    }
    return out;
}

}  // namespace jg_emu
