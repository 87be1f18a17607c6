// Run-time choice of the kernel table: CPU features are read once; MIXLLM_SIMD forces one.
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "mixllm/kernels.hpp"

namespace mixllm {
namespace {

bool cpu_has_avx2() {
#if defined(MIXLLM_HAVE_X86_KERNELS)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool cpu_has_avx512() {
#if defined(MIXLLM_HAVE_X86_KERNELS)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && cpu_has_avx2();
#else
    return false;
#endif
}

const Kernels* by_name(const std::string& name) {
    if (name == "scalar") return &scalar_kernels();
#if defined(MIXLLM_HAVE_X86_KERNELS)
    if (name == "avx2" && cpu_has_avx2()) return &avx2_kernels();
    if (name == "avx512" && cpu_has_avx512()) return &avx512_kernels();
#endif
    return nullptr;
}

const Kernels* initial() {
    if (const char* env = std::getenv("MIXLLM_SIMD")) {
        if (const Kernels* k = by_name(env)) return k;
        // An unusable request falls back to the best table rather than failing at import;
        // simd_backend() reports what actually runs.
    }
    return by_name(available_backends().back());
}

std::atomic<const Kernels*>& active() {
    static std::atomic<const Kernels*> k{initial()};
    return k;
}

}  // namespace

std::vector<std::string> available_backends() {
    std::vector<std::string> out{"scalar"};
    if (cpu_has_avx2()) out.emplace_back("avx2");
    if (cpu_has_avx512()) out.emplace_back("avx512");
    return out;
}

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

void set_backend(const std::string& name) {
    const Kernels* k = by_name(name);
    if (k == nullptr) throw std::invalid_argument("SIMD backend not available on this CPU: " + name);
    active().store(k, std::memory_order_release);
}

}  // namespace mixllm
