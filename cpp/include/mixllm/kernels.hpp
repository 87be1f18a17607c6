// Raw-pointer float64 kernels, one implementation per instruction set.
//
// Every kernel exists in scalar.cpp (the oracle), avx2.cpp and avx512.cpp; the table for the
// running CPU is chosen once (select_kernels) and can be forced with MIXLLM_SIMD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mixllm {

struct Kernels {
    const char* name;
    // sum_i a[i] * b[i]
    double (*dot)(const double* a, const double* b, std::size_t n);
    // M += c * u u^T, M row-major n x n
    void (*syr)(double* M, const double* u, double c, std::size_t n);
    // y = M x, M row-major m x n (rectangular: the low-rank corrections W of the pool)
    void (*gemv_rect)(const double* M, const double* x, double* y, std::size_t m, std::size_t n);
    // y = M^T x, M row-major m x n: y_j = sum_i x_i M_ij, summed over i in order (an
    // update's W^T g, pool.hpp; each row of M read once, y kept in L1).
    void (*gemv_t)(const double* M, const double* x, double* y, std::size_t m, std::size_t n);
    // y = R x, and Y_b = R x_b for the B rows of X (row-major B x n) into Y (B x n), R lower
    // triangular n x n in the panel layout (see panel_offset). Panels stream R once per call with no horizontal sums, so these are the
    // hot path of a decision (L2-bandwidth bound) and of a batch (FMA bound).
    void (*panel_mv)(const double* P, const double* x, double* y, std::size_t n);
    // y = R^T x on the same panels (an update's step of theta, pool.hpp): each panel p adds
    // R_{8p+r, j} x_{8p+r} into an accumulator of 8 lanes per column j (work: 8 n doubles),
    // then y_j = the sum of column j's lanes. Streams R once, no horizontal sum inside.
    void (*panel_tmv)(const double* P, const double* x, double* y, std::size_t n, double* work);
    void (*panel_mm)(const double* P, const double* X, std::size_t B, std::size_t n, double* Y);
    // G_ab = sum_{k<len} X_ak Y_bk for a < m, b < nc (rows of X and Y at strides ldx, ldy; G at
    // stride ldg): a block of dot products, C = X Y^T. The bulk of the blocked factorisations
    // (linalg.cpp: Cholesky, triangular inverse, U U^T, the fold's Gram matrix), O(m nc len)
    // in register tiles so that each load serves several products.
    void (*gemm_nt)(const double* X, std::size_t ldx, const double* Y, std::size_t ldy,
                    std::size_t m, std::size_t nc, std::size_t len, double* G, std::size_t ldg);
    // The same two products with the panels stored as float32 (the opt-in reduced-precision
    // scoring of a pool, Pool::set_float32); half the bytes of the float64 panels.
    //   panel_mv_f32 (a decision) keeps the panels in float32: x rounded to float32, float32
    //   products, each block of 8 columns j..j+7 summed in float32 as
    //   ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7)) (p_k = fl32(R_{i,j+k} fl32(x_{j+k})), zeros past
    //   the last column), the block sums widened and added in float64 in column order. Every
    //   backend computes exactly this (no fused multiply-add: -ffp-contract=off), and so does
    //   _reference.panel_mv_f32. Each product passes through at most 5 float32 roundings (x,
    //   the product, three sums), the m = ceil(n/8) block sums through m float64 additions:
    //     |y_i - sum_j R_ij x_j| <= (5 2^-24 + m 2^-53) sum_j |R_ij x_j|   (+ O(2^-48))
    //   for R the float32 entries, in float32's normal range (each rounding into the subnormals
    //   adds up to 2^-150 absolute; |x_j| beyond FLT_MAX rounds to infinity). Against the
    //   float64 triangle the entries' own rounding adds 2^-24: 6 2^-24 in all. Not widening
    //   each entry is what makes it fast (Zen 4, d=385: 3.1 us against 5.2 us widened).
    //   panel_mm_f32 (a batch) widens each entry to float64 for a block of 4 or 8 queries
    //   (the conversion amortised over them; float64 products and sums: only R's rounding,
    //   2^-24 |R||x|); the B mod 4 queries left over go through panel_mv_f32.
    void (*panel_mv_f32)(const float* P, const double* x, double* y, std::size_t n);
    void (*panel_mm_f32)(const float* P, const double* X, std::size_t B, std::size_t n,
                         double* Y);
    // Static text embeddings (float32, see the note below): for each of the B texts,
    // the weighted sum of the table rows of its token ids, L2-normalised.
    void (*embed_pool)(const float* T, std::size_t dim, const float* w, const std::int32_t* ids,
                       const std::int64_t* offsets, std::size_t B, float* out);
};

// embed_pool: text b owns ids[offsets[b] .. offsets[b+1]) (offsets non-decreasing, ids valid
// rows of the vocab x dim row-major table T, w one weight per vocab row):
//   s_b   = sum_i w[ids_i] T[ids_i, :]      accumulated in float32, tokens in order
//   out_b = s_b / max(||s_b||_2, 1e-12)      the norm in float64; a text with no tokens
//                                            (or all weights zero) gives the zero vector.
// Backends differ only by FMA rounding: |out - exact| <= ~L 2^-24 sum_i |w_i T_i| / ||s||.

// Panel layout of a lower-triangular n x n R: rows in panels of kPanel; panel p (rows
// kPanel p .. kPanel p + kPanel - 1) stores its columns j = 0 .. c_p - 1, c_p = min(kPanel (p + 1),
// n), column-interleaved: entry (kPanel p + r, j) at panel_offset(p) + kPanel j + r, with zeros
// above the diagonal and in the rows past n.
constexpr std::size_t kPanel = 8;
constexpr std::size_t panel_count(std::size_t n) { return (n + kPanel - 1) / kPanel; }
constexpr std::size_t panel_offset(std::size_t p) { return kPanel * kPanel * p * (p + 1) / 2; }
constexpr std::size_t panel_size(std::size_t n) {
    // Every panel but the last is full; the last has n columns.
    return n == 0 ? 0 : panel_offset(panel_count(n) - 1) + kPanel * n;
}

// Offset of row i in a packed lower-triangular matrix.
constexpr std::size_t packed_row(std::size_t i) { return i * (i + 1) / 2; }

const Kernels& scalar_kernels();
#if defined(MIXLLM_HAVE_X86_KERNELS)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
#endif

// What the dispatch needs to know of the CPU and the operating system (x86-64; all false
// elsewhere): the instruction sets the kernel files are compiled for, and whether the OS saves
// the AVX registers (os_avx: XCR0 XMM+YMM) and the AVX-512 ones (os_avx512: also opmask and ZMM).
struct CpuFeatures {
    bool avx = false, avx2 = false, fma = false;
    bool avx512f = false, avx512dq = false, avx512vl = false;
    bool os_avx = false, os_avx512 = false;
};
// This CPU's features (CPUID and XGETBV).
CpuFeatures cpu_features();
// The best backend a CPU with these features can run: "avx512" needs every flag, "avx2" the
// first three and os_avx, else "scalar". A pure function (the tests hold it to a table).
std::string backend_for(const CpuFeatures& f);

// Names of the backends this CPU can run, best last ("scalar" always first).
std::vector<std::string> available_backends();

// The active table. Chosen at first use: MIXLLM_SIMD if set (and available), else the best.
const Kernels& kernels();

// Force a backend by name; throws std::invalid_argument for an unknown or unavailable name.
void set_backend(const std::string& name);

}  // namespace mixllm
