// AVX-512F kernels (8 doubles a register, masked tails), compiled with -mavx512f -mfma for
// this file only.
//   dot        s = sum_i a_i b_i
//   syr        M_ij += c u_i u_j
//   gemv_rect  y_i = sum_j M_ij x_j            (M m x n, two rows a pass)
//   panel_mv   y_i = sum_{j<=i} R_ij x_j       (panel layout: one 8-row panel a register,
//                                               four panels a pass sharing each broadcast x_j)
//   panel_tmv  y_j = sum_{i>=j} R_ij x_i      (panel layout: 8-lane accumulators per column)
//   panel_mm   Y_bi = sum_{j<=i} R_ij X_bj     (panel layout, eight queries per pass)
//   gemv_t     avx2.cpp's (an update's W^T g: r x d, read once from L2; not measured on AVX-512)
//   gemm_nt    avx2.cpp's (256-bit tiles): the factorisations' bulk is FMA-bound, and the
//              AVX-512 machines this was measured on (Zen 4) issue a 512-bit FMA as two
//              256-bit halves, so a 512-bit tile would not be faster there; it is also the
//              kernel the AVX2 tests hold to the reference
//   panel_mv_f32  the same on float32 panels: float32 products summed in float32 over blocks
//               of 8 columns, the block sums in float64 (two columns a 16-float register)
//   panel_mm_f32  the same for B queries: entries widened, float64 products (8 floats a load)
//   embed_pool o_b = s_b / max(||s_b||, 1e-12), s_b = sum_i w[id_i] T[id_i]  (float32,
//               16 floats a register, 64 columns per pass over a text's rows)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mixllm/kernels.hpp"

namespace mixllm {
namespace {

inline __mmask8 tail_mask(std::size_t r) { return static_cast<__mmask8>((1u << r) - 1u); }

double dot(const double* a, const double* b, std::size_t n) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    __m512d s2 = _mm512_setzero_pd(), s3 = _mm512_setzero_pd();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i), s0);
        s1 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 8), _mm512_loadu_pd(b + i + 8), s1);
        s2 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 16), _mm512_loadu_pd(b + i + 16), s2);
        s3 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 24), _mm512_loadu_pd(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i), s0);
    if (i < n) {
        const __mmask8 m = tail_mask(n - i);
        s1 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m, a + i), _mm512_maskz_loadu_pd(m, b + i), s1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
}

void syr(double* M, const double* u, double c, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const __m512d vc = _mm512_set1_pd(c * u[i]);
        double* row = M + i * n;
        std::size_t j = 0;
        for (; j + 8 <= n; j += 8)
            _mm512_storeu_pd(row + j,
                             _mm512_fmadd_pd(vc, _mm512_loadu_pd(u + j), _mm512_loadu_pd(row + j)));
        if (j < n) {
            const __mmask8 m = tail_mask(n - j);
            _mm512_mask_storeu_pd(row + j, m,
                                  _mm512_fmadd_pd(vc, _mm512_maskz_loadu_pd(m, u + j),
                                                  _mm512_maskz_loadu_pd(m, row + j)));
        }
    }
}

// Two rows a pass: each load of x serves both (a decision's T targets per LLM, W p).
void gemv_rect(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    std::size_t i = 0;
    for (; i + 2 <= m; i += 2) {
        const double* a = M + i * n;
        const double* b = a + n;
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
        __m512d b0 = _mm512_setzero_pd(), b1 = _mm512_setzero_pd();
        std::size_t j = 0;
        for (; j + 16 <= n; j += 16) {
            const __m512d x0 = _mm512_loadu_pd(x + j), x1 = _mm512_loadu_pd(x + j + 8);
            a0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + j), x0, a0);
            b0 = _mm512_fmadd_pd(_mm512_loadu_pd(b + j), x0, b0);
            a1 = _mm512_fmadd_pd(_mm512_loadu_pd(a + j + 8), x1, a1);
            b1 = _mm512_fmadd_pd(_mm512_loadu_pd(b + j + 8), x1, b1);
        }
        for (; j + 8 <= n; j += 8) {
            const __m512d x0 = _mm512_loadu_pd(x + j);
            a0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + j), x0, a0);
            b0 = _mm512_fmadd_pd(_mm512_loadu_pd(b + j), x0, b0);
        }
        if (j < n) {
            const __mmask8 t = tail_mask(n - j);
            const __m512d x0 = _mm512_maskz_loadu_pd(t, x + j);
            a1 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(t, a + j), x0, a1);
            b1 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(t, b + j), x0, b1);
        }
        y[i] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
        y[i + 1] = _mm512_reduce_add_pd(_mm512_add_pd(b0, b1));
    }
    if (i < m) y[i] = dot(M + i * n, x, n);
}

inline __mmask8 row_mask(std::size_t p, std::size_t n) {
    const std::size_t left = n - kPanel * p;
    return left >= kPanel ? static_cast<__mmask8>(0xFF) : tail_mask(left);
}

// Four panels a pass: panels p .. p+3 share columns 0 .. 8(p+1) - 1, so each broadcast x_j
// serves four FMAs (one accumulator a panel: four independent chains); the columns only the
// later panels have follow in three short steps. The triangle streams from L2 once.
void panel_mv(const double* P, const double* x, double* y, std::size_t n) {
    static_assert(kPanel == 8, "one panel per AVX-512 register");
    const std::size_t np = panel_count(n);
    std::size_t p = 0;
    for (; p + 4 <= np; p += 4) {
        const double* A = P + panel_offset(p);
        const double* B = P + panel_offset(p + 1);
        const double* C = P + panel_offset(p + 2);
        const double* D = P + panel_offset(p + 3);
        const std::size_t c = kPanel * (p + 1), cd = std::min(c + 3 * kPanel, n);
        __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
        __m512d cc = _mm512_setzero_pd(), dd = _mm512_setzero_pd();
        std::size_t j = 0;
        for (; j < c; ++j) {
            const __m512d xj = _mm512_set1_pd(x[j]);
            a = _mm512_fmadd_pd(_mm512_loadu_pd(A + 8 * j), xj, a);
            b = _mm512_fmadd_pd(_mm512_loadu_pd(B + 8 * j), xj, b);
            cc = _mm512_fmadd_pd(_mm512_loadu_pd(C + 8 * j), xj, cc);
            dd = _mm512_fmadd_pd(_mm512_loadu_pd(D + 8 * j), xj, dd);
        }
        __m512d b2 = _mm512_setzero_pd(), c2 = _mm512_setzero_pd(), d2 = _mm512_setzero_pd();
        for (; j < c + kPanel; ++j) {
            const __m512d xj = _mm512_set1_pd(x[j]);
            b2 = _mm512_fmadd_pd(_mm512_loadu_pd(B + 8 * j), xj, b2);
            c2 = _mm512_fmadd_pd(_mm512_loadu_pd(C + 8 * j), xj, c2);
            d2 = _mm512_fmadd_pd(_mm512_loadu_pd(D + 8 * j), xj, d2);
        }
        __m512d c3 = _mm512_setzero_pd(), d3 = _mm512_setzero_pd();
        for (; j < c + 2 * kPanel; ++j) {
            const __m512d xj = _mm512_set1_pd(x[j]);
            c3 = _mm512_fmadd_pd(_mm512_loadu_pd(C + 8 * j), xj, c3);
            d3 = _mm512_fmadd_pd(_mm512_loadu_pd(D + 8 * j), xj, d3);
        }
        __m512d d4 = _mm512_setzero_pd();
        for (; j < cd; ++j) d4 = _mm512_fmadd_pd(_mm512_loadu_pd(D + 8 * j), _mm512_set1_pd(x[j]), d4);
        _mm512_storeu_pd(y + kPanel * p, a);
        _mm512_storeu_pd(y + kPanel * (p + 1), _mm512_add_pd(b, b2));
        _mm512_storeu_pd(y + kPanel * (p + 2), _mm512_add_pd(_mm512_add_pd(cc, c2), c3));
        _mm512_mask_storeu_pd(y + kPanel * (p + 3), row_mask(p + 3, n),
                              _mm512_add_pd(_mm512_add_pd(dd, d2), _mm512_add_pd(d3, d4)));
    }
    for (; p < np; ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n);
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
        __m512d a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
        std::size_t j = 0;
        for (; j + 4 <= c; j += 4) {
            a0 = _mm512_fmadd_pd(_mm512_loadu_pd(Pp + 8 * j), _mm512_set1_pd(x[j]), a0);
            a1 = _mm512_fmadd_pd(_mm512_loadu_pd(Pp + 8 * j + 8), _mm512_set1_pd(x[j + 1]), a1);
            a2 = _mm512_fmadd_pd(_mm512_loadu_pd(Pp + 8 * j + 16), _mm512_set1_pd(x[j + 2]), a2);
            a3 = _mm512_fmadd_pd(_mm512_loadu_pd(Pp + 8 * j + 24), _mm512_set1_pd(x[j + 3]), a3);
        }
        for (; j < c; ++j) a0 = _mm512_fmadd_pd(_mm512_loadu_pd(Pp + 8 * j), _mm512_set1_pd(x[j]), a0);
        const __m512d s = _mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3));
        _mm512_mask_storeu_pd(y + kPanel * p, row_mask(p, n), s);
    }
}

// One column of a panel as float64: a load, or (float32 panels) a load widened.
inline __m512d load_col(const double* p) { return _mm512_loadu_pd(p); }
inline __m512d load_col(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }

// Q queries a pass over the triangle: each column, loaded (and widened) once, serves Q FMAs.
template <std::size_t Q, typename T>
inline void panel_block(const T* P, const double* X, std::size_t n, double* Y) {
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const T* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n);
        __m512d acc[Q];
        for (std::size_t q = 0; q < Q; ++q) acc[q] = _mm512_setzero_pd();
        for (std::size_t j = 0; j < c; ++j) {
            const __m512d r = load_col(Pp + 8 * j);
            for (std::size_t q = 0; q < Q; ++q)
                acc[q] = _mm512_fmadd_pd(r, _mm512_set1_pd(X[q * n + j]), acc[q]);
        }
        const __mmask8 m = row_mask(p, n);
        for (std::size_t q = 0; q < Q; ++q) _mm512_mask_storeu_pd(Y + q * n + kPanel * p, m, acc[q]);
    }
}

// y = R^T x: per panel, the 8 values of x it multiplies in one register, one FMA per column into
// that column's 8-lane accumulator (L1-resident); the lanes summed at the end.
void panel_tmv(const double* P, const double* x, double* y, std::size_t n, double* work) {
    std::fill(work, work + kPanel * n, 0.0);
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n), rows = std::min(kPanel, n - kPanel * p);
        const __m512d xp = _mm512_maskz_loadu_pd(tail_mask(rows), x + kPanel * p);
        for (std::size_t j = 0; j < c; ++j) {
            double* a = work + kPanel * j;
            _mm512_storeu_pd(a, _mm512_fmadd_pd(_mm512_loadu_pd(Pp + kPanel * j), xp,
                                                _mm512_loadu_pd(a)));
        }
    }
    for (std::size_t j = 0; j < n; ++j) y[j] = _mm512_reduce_add_pd(_mm512_loadu_pd(work + kPanel * j));
}

void panel_mm(const double* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    std::size_t b = 0;
    for (; b + 8 <= B; b += 8) panel_block<8>(P, X + b * n, n, Y + b * n);
    for (; b + 4 <= B; b += 4) panel_block<4>(P, X + b * n, n, Y + b * n);
    for (; b < B; ++b) panel_mv(P, X + b * n, Y + b * n, n);
}

// float32 panels, one query: the products and short sums in float32 (16 lanes a register),
// so that no entry of R is widened. A register holds two consecutive columns of a panel (8 rows
// each); x_j is rounded to float32 once per 8 columns and spread by a permute into the matching
// [x_j x8 | x_{j+1} x8]. A block of 8 columns is summed as ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7))
// (p_k = fl32(R_{i,j+k} fl32(x_{j+k}))), widened, and added in float64 block after block: the
// order scalar.cpp and _reference.panel_mv_f32 follow, so all three agree bit for bit. Error:
// x rounding, product, three sums: |y_i - (R x)_i| <= (5 2^-24 + ceil(n/8) 2^-53) sum_j |R_ij x_j|
// (kernels.hpp). Four panels a pass share each block's x (as in panel_mv).
struct XPairs {
    __m512 v[4];  // v[k] = [x_{j+2k} x8 | x_{j+2k+1} x8]
};

// x_j .. x_{j+7} (only the first `left` when left < 8; the rest zero), rounded to float32.
inline XPairs x_pairs(const double* x, std::size_t left) {
    const __m512d xd = left >= kPanel ? _mm512_loadu_pd(x)
                                      : _mm512_maskz_loadu_pd(tail_mask(left), x);
    const __m512 xf = _mm512_castps256_ps512(_mm512_cvtpd_ps(xd));
    XPairs X;
    for (int k = 0; k < 4; ++k) {
        const int a = 2 * k, b = 2 * k + 1;
        X.v[k] = _mm512_permutexvar_ps(
            _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a), xf);
    }
    return X;
}

// acc + widen(block sum) for the 8 columns at A; the tail version reads only the first `left`
// (masked loads: the last panel ends at column n).
inline __m512d block_f32(const float* A, const XPairs& X, __m512d acc) {
    const __m512 m0 = _mm512_mul_ps(_mm512_loadu_ps(A), X.v[0]);
    const __m512 m1 = _mm512_mul_ps(_mm512_loadu_ps(A + 16), X.v[1]);
    const __m512 m2 = _mm512_mul_ps(_mm512_loadu_ps(A + 32), X.v[2]);
    const __m512 m3 = _mm512_mul_ps(_mm512_loadu_ps(A + 48), X.v[3]);
    const __m512 s = _mm512_add_ps(_mm512_add_ps(m0, m2), _mm512_add_ps(m1, m3));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm512_add_pd(acc, _mm512_cvtps_pd(h));
}

inline __m512d block_f32_tail(const float* A, const XPairs& X, std::size_t left, __m512d acc) {
    __m512 m[4];
    for (std::size_t k = 0; k < 4; ++k) {
        const std::size_t cols = left > 2 * k ? std::min<std::size_t>(2, left - 2 * k) : 0;
        const __mmask16 mk = cols == 2 ? 0xFFFF : cols == 1 ? 0x00FF : 0;
        m[k] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, A + 16 * k), X.v[k]);
    }
    const __m512 s = _mm512_add_ps(_mm512_add_ps(m[0], m[2]), _mm512_add_ps(m[1], m[3]));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm512_add_pd(acc, _mm512_cvtps_pd(h));
}

// The columns j .. c - 1 of one panel (j a multiple of 8).
inline __m512d panel_f32_from(const float* A, const double* x, std::size_t j, std::size_t c,
                              __m512d acc) {
    for (; j + kPanel <= c; j += kPanel) acc = block_f32(A + 8 * j, x_pairs(x + j, kPanel), acc);
    if (j < c) acc = block_f32_tail(A + 8 * j, x_pairs(x + j, c - j), c - j, acc);
    return acc;
}

void panel_mv_f32(const float* P, const double* x, double* y, std::size_t n) {
    const std::size_t np = panel_count(n);
    std::size_t p = 0;
    for (; p + 4 <= np; p += 4) {
        const float* A = P + panel_offset(p);
        const float* B = P + panel_offset(p + 1);
        const float* C = P + panel_offset(p + 2);
        const float* D = P + panel_offset(p + 3);
        const std::size_t c = kPanel * (p + 1);
        __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
        __m512d cc = _mm512_setzero_pd(), dd = _mm512_setzero_pd();
        std::size_t j = 0;
        for (; j < c; j += kPanel) {
            const XPairs X = x_pairs(x + j, kPanel);
            a = block_f32(A + 8 * j, X, a);
            b = block_f32(B + 8 * j, X, b);
            cc = block_f32(C + 8 * j, X, cc);
            dd = block_f32(D + 8 * j, X, dd);
        }
        {
            const XPairs X = x_pairs(x + j, kPanel);
            b = block_f32(B + 8 * j, X, b);
            cc = block_f32(C + 8 * j, X, cc);
            dd = block_f32(D + 8 * j, X, dd);
            j += kPanel;
        }
        {
            const XPairs X = x_pairs(x + j, kPanel);
            cc = block_f32(C + 8 * j, X, cc);
            dd = block_f32(D + 8 * j, X, dd);
            j += kPanel;
        }
        dd = panel_f32_from(D, x, j, std::min(j + kPanel, n), dd);  // only D can be partial
        _mm512_storeu_pd(y + kPanel * p, a);
        _mm512_storeu_pd(y + kPanel * (p + 1), b);
        _mm512_storeu_pd(y + kPanel * (p + 2), cc);
        _mm512_mask_storeu_pd(y + kPanel * (p + 3), row_mask(p + 3, n), dd);
    }
    for (; p < np; ++p) {
        const __m512d s = panel_f32_from(P + panel_offset(p), x, 0, std::min(kPanel * (p + 1), n),
                                         _mm512_setzero_pd());
        _mm512_mask_storeu_pd(y + kPanel * p, row_mask(p, n), s);
    }
}

// float32 panels, batches: panel_block on widened columns (the conversion amortised over the
// block's 4 or 8 queries, float64 products and sums); the B mod 4 queries left over go through
// panel_mv_f32.
void panel_mm_f32(const float* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    std::size_t b = 0;
    for (; b + 8 <= B; b += 8) panel_block<8>(P, X + b * n, n, Y + b * n);
    for (; b + 4 <= B; b += 4) panel_block<4>(P, X + b * n, n, Y + b * n);
    for (; b < B; ++b) panel_mv_f32(P, X + b * n, Y + b * n, n);
}


// The norm in float64 over the float32 sum, in this file's own copy: an inline helper shared
// by files compiled with different ISA flags could be linked from the wrong one.
void normalize(float* v, std::size_t dim) {
    double ss = 0.0;
    for (std::size_t j = 0; j < dim; ++j) ss += static_cast<double>(v[j]) * v[j];
    const double nrm = std::sqrt(ss);
    const float inv = static_cast<float>(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    for (std::size_t j = 0; j < dim; ++j) v[j] *= inv;
}

// 64 columns (four registers) at a time across all of a text's tokens, so each accumulator
// stays in a register while the rows stream past; then 16-wide steps, the last one masked.
void embed_pool(const float* T, std::size_t dim, const float* w, const std::int32_t* ids,
                const std::int64_t* offsets, std::size_t B, float* out) {
    for (std::size_t b = 0; b < B; ++b) {
        float* o = out + b * dim;
        const std::int64_t lo = offsets[b], hi = offsets[b + 1];
        std::size_t j = 0;
        for (; j + 64 <= dim; j += 64) {
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
            for (std::int64_t i = lo; i < hi; ++i) {
                const std::size_t t = static_cast<std::size_t>(ids[i]);
                const __m512 wt = _mm512_set1_ps(w[t]);
                const float* r = T + t * dim + j;
                a0 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(r), a0);
                a1 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(r + 16), a1);
                a2 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(r + 32), a2);
                a3 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(r + 48), a3);
            }
            _mm512_storeu_ps(o + j, a0);
            _mm512_storeu_ps(o + j + 16, a1);
            _mm512_storeu_ps(o + j + 32, a2);
            _mm512_storeu_ps(o + j + 48, a3);
        }
        for (; j < dim; j += 16) {
            const __mmask16 m = dim - j >= 16 ? static_cast<__mmask16>(0xFFFF)
                                              : static_cast<__mmask16>((1u << (dim - j)) - 1u);
            __m512 a = _mm512_setzero_ps();
            for (std::int64_t i = lo; i < hi; ++i) {
                const std::size_t t = static_cast<std::size_t>(ids[i]);
                a = _mm512_fmadd_ps(_mm512_set1_ps(w[t]), _mm512_maskz_loadu_ps(m, T + t * dim + j), a);
            }
            _mm512_mask_storeu_ps(o + j, m, a);
        }
        normalize(o, dim);
    }
}

}  // namespace

const Kernels& avx512_kernels() {
    static const Kernels k{"avx512", dot, syr, gemv_rect, avx2_kernels().gemv_t, panel_mv, panel_tmv, panel_mm,
                           avx2_kernels().gemm_nt, panel_mv_f32, panel_mm_f32, embed_pool};
    return k;
}

}  // namespace mixllm
