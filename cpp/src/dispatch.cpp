// Run-time choice of the kernel table: CPU features are read once; MIXLLM_SIMD forces one.
//
// A table may run only if the CPU has every instruction set its file is compiled for
// (CMakeLists.txt) and the operating system saves the registers it uses (XCR0, read with
// xgetbv once CPUID says the OS enabled XSAVE): avx2.cpp is built with -mavx2 -mfma (AVX
// registers: XMM and YMM state), avx512.cpp with -mavx512f -mavx512dq -mavx512vl -mavx2 -mfma
// (also the opmask and both halves of the ZMM state). backend_for() is the decision, a pure
// function of the features, so that tests can hold it to a table of feature sets.
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#if defined(MIXLLM_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

#include "mixllm/kernels.hpp"

namespace mixllm {

std::string backend_for(const CpuFeatures& f) {
    const bool avx2 = f.avx && f.avx2 && f.fma && f.os_avx;
    const bool avx512 = avx2 && f.avx512f && f.avx512dq && f.avx512vl && f.os_avx512;
    return avx512 ? "avx512" : avx2 ? "avx2" : "scalar";
}

CpuFeatures cpu_features() {
    CpuFeatures f;
#if defined(MIXLLM_HAVE_X86_KERNELS)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        f.fma = (c >> 12) & 1u;
        f.avx = (c >> 28) & 1u;
        if ((c >> 27) & 1u) {  // OSXSAVE: xgetbv may be executed
            unsigned lo = 0, hi = 0;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            f.os_avx = (lo & 0x6u) == 0x6u;        // XMM and YMM state
            f.os_avx512 = (lo & 0xE6u) == 0xE6u;   // and opmask, ZMM_Hi256, Hi16_ZMM
        }
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = (b >> 5) & 1u;
        f.avx512f = (b >> 16) & 1u;
        f.avx512dq = (b >> 17) & 1u;
        f.avx512vl = (b >> 31) & 1u;
    }
#endif
    return f;
}

namespace {

// The best backend this process may run, probed once.
int best_rank() {
    static const int rank = [] {
        const std::string b = backend_for(cpu_features());
        return b == "avx512" ? 2 : b == "avx2" ? 1 : 0;
    }();
    return rank;
}

const Kernels* by_name(const std::string& name) {
    if (name == "scalar") return &scalar_kernels();
#if defined(MIXLLM_HAVE_X86_KERNELS)
    if (name == "avx2" && best_rank() >= 1) return &avx2_kernels();
    if (name == "avx512" && best_rank() >= 2) return &avx512_kernels();
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
#if defined(MIXLLM_HAVE_X86_KERNELS)
    if (best_rank() >= 1) out.emplace_back("avx2");
    if (best_rank() >= 2) out.emplace_back("avx512");
#endif
    return out;
}

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

void set_backend(const std::string& name) {
    const Kernels* k = by_name(name);
    if (k == nullptr) throw std::invalid_argument("SIMD backend not available on this CPU: " + name);
    active().store(k, std::memory_order_release);
}

}  // namespace mixllm
