// AVX2 + FMA kernels (4 doubles a register), compiled with -mavx2 -mfma for this file only.
//   dot        s = sum_i a_i b_i
//   syr        M_ij += c u_i u_j
//   gemv_rect  y_i = sum_j M_ij x_j            (M m x n, two rows a pass)
//   gemv_t     y_j = sum_i x_i M_ij            (M m x n: four rows a pass, y in registers per
//                                               4 columns, the rows' terms added in order)
//   panel_mv   y_i = sum_{j<=i} R_ij x_j       (panel layout: two registers a panel, x_j
//                                               broadcast)
//   panel_tmv  y_j = sum_{i>=j} R_ij x_i      (panel layout: 8-lane accumulators per column)
//   panel_mm   Y_bi = sum_{j<=i} R_ij X_bj     (panel layout, four queries per pass)
//   gemm_nt    G_ab = sum_k X_ak Y_bk          (tiles of 2 rows x 4 columns: 8 accumulators,
//                                               each load of 4 k's serves 2 or 4 products)
//   panel_mv_f32  the same on float32 panels: float32 products and sums over blocks of 8
//               columns, the block sums in float64 (two panels a pass)
//   panel_mm_f32  the same for B queries: entries widened, float64 products (four queries a pass)
//   embed_pool o_b = s_b / max(||s_b||, 1e-12), s_b = sum_i w[id_i] T[id_i]  (float32,
//               8 floats a register, 32 columns per pass over a text's rows)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mixllm/kernels.hpp"

namespace mixllm {
namespace {

inline double hsum(__m256d v) {
    __m128d lo = _mm256_castpd256_pd128(v);
    __m128d hi = _mm256_extractf128_pd(v, 1);
    lo = _mm_add_pd(lo, hi);
    __m128d sh = _mm_unpackhi_pd(lo, lo);
    return _mm_cvtsd_f64(_mm_add_sd(lo, sh));
}

double dot(const double* a, const double* b, std::size_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    __m256d s2 = _mm256_setzero_pd(), s3 = _mm256_setzero_pd();
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4), s1);
        s2 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 8), _mm256_loadu_pd(b + i + 8), s2);
        s3 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 12), _mm256_loadu_pd(b + i + 12), s3);
    }
    for (; i + 4 <= n; i += 4)
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), s0);
    double s = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

void syr(double* M, const double* u, double c, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const double ci = c * u[i];
        const __m256d vc = _mm256_set1_pd(ci);
        double* row = M + i * n;
        std::size_t j = 0;
        for (; j + 4 <= n; j += 4)
            _mm256_storeu_pd(row + j,
                             _mm256_fmadd_pd(vc, _mm256_loadu_pd(u + j), _mm256_loadu_pd(row + j)));
        for (; j < n; ++j) row[j] += ci * u[j];
    }
}

// Two rows a pass: each load of x serves both (a decision's T targets per LLM, W p).
void gemv_rect(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    std::size_t i = 0;
    for (; i + 2 <= m; i += 2) {
        const double* a = M + i * n;
        const double* b = a + n;
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
        __m256d b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd();
        std::size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            const __m256d x0 = _mm256_loadu_pd(x + j), x1 = _mm256_loadu_pd(x + j + 4);
            a0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j), x0, a0);
            b0 = _mm256_fmadd_pd(_mm256_loadu_pd(b + j), x0, b0);
            a1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j + 4), x1, a1);
            b1 = _mm256_fmadd_pd(_mm256_loadu_pd(b + j + 4), x1, b1);
        }
        for (; j + 4 <= n; j += 4) {
            const __m256d x0 = _mm256_loadu_pd(x + j);
            a0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j), x0, a0);
            b0 = _mm256_fmadd_pd(_mm256_loadu_pd(b + j), x0, b0);
        }
        double sa = hsum(_mm256_add_pd(a0, a1)), sb = hsum(_mm256_add_pd(b0, b1));
        for (; j < n; ++j) sa += a[j] * x[j], sb += b[j] * x[j];
        y[i] = sa, y[i + 1] = sb;
    }
    if (i < m) y[i] = dot(M + i * n, x, n);
}

// The 8 rows of a panel leave in two registers; rows past n are not written.
void gemv_t(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    std::fill(y, y + n, 0.0);
    const std::size_t n4 = n - n % 4;
    std::size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const double* M0 = M + i * n;
        const double *M1 = M0 + n, *M2 = M1 + n, *M3 = M2 + n;
        const __m256d x0 = _mm256_set1_pd(x[i]), x1 = _mm256_set1_pd(x[i + 1]);
        const __m256d x2 = _mm256_set1_pd(x[i + 2]), x3 = _mm256_set1_pd(x[i + 3]);
        for (std::size_t j = 0; j < n4; j += 4) {
            __m256d acc = _mm256_loadu_pd(y + j);
            acc = _mm256_fmadd_pd(x0, _mm256_loadu_pd(M0 + j), acc);
            acc = _mm256_fmadd_pd(x1, _mm256_loadu_pd(M1 + j), acc);
            acc = _mm256_fmadd_pd(x2, _mm256_loadu_pd(M2 + j), acc);
            acc = _mm256_fmadd_pd(x3, _mm256_loadu_pd(M3 + j), acc);
            _mm256_storeu_pd(y + j, acc);
        }
        for (std::size_t j = n4; j < n; ++j)
            y[j] = std::fma(x[i + 3], M3[j],
                            std::fma(x[i + 2], M2[j], std::fma(x[i + 1], M1[j], std::fma(x[i], M0[j], y[j]))));
    }
    for (; i < m; ++i) {
        const double* Mi = M + i * n;
        const __m256d xi = _mm256_set1_pd(x[i]);
        for (std::size_t j = 0; j < n4; j += 4)
            _mm256_storeu_pd(y + j, _mm256_fmadd_pd(xi, _mm256_loadu_pd(Mi + j), _mm256_loadu_pd(y + j)));
        for (std::size_t j = n4; j < n; ++j) y[j] = std::fma(x[i], Mi[j], y[j]);
    }
}

inline void store_panel(double* y, std::size_t p, std::size_t n, __m256d lo, __m256d hi) {
    alignas(32) double t[8];
    _mm256_store_pd(t, lo);
    _mm256_store_pd(t + 4, hi);
    const std::size_t rows = std::min(kPanel, n - kPanel * p);
    for (std::size_t r = 0; r < rows; ++r) y[kPanel * p + r] = t[r];
}

void panel_mv(const double* P, const double* x, double* y, std::size_t n) {
    static_assert(kPanel == 8, "one panel in two AVX2 registers");
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n);
        __m256d l0 = _mm256_setzero_pd(), h0 = _mm256_setzero_pd();
        __m256d l1 = _mm256_setzero_pd(), h1 = _mm256_setzero_pd();
        std::size_t j = 0;
        for (; j + 2 <= c; j += 2) {
            const __m256d x0 = _mm256_broadcast_sd(x + j), x1 = _mm256_broadcast_sd(x + j + 1);
            l0 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j), x0, l0);
            h0 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j + 4), x0, h0);
            l1 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j + 8), x1, l1);
            h1 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j + 12), x1, h1);
        }
        if (j < c) {
            const __m256d x0 = _mm256_broadcast_sd(x + j);
            l0 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j), x0, l0);
            h0 = _mm256_fmadd_pd(_mm256_loadu_pd(Pp + 8 * j + 4), x0, h0);
        }
        store_panel(y, p, n, _mm256_add_pd(l0, l1), _mm256_add_pd(h0, h1));
    }
}

// One column of a panel as its two float64 halves: loads, or (float32 panels) a load widened.
inline void load_col(const double* p, __m256d& lo, __m256d& hi) {
    lo = _mm256_loadu_pd(p), hi = _mm256_loadu_pd(p + 4);
}
inline void load_col(const float* p, __m256d& lo, __m256d& hi) {
    const __m256 v = _mm256_loadu_ps(p);
    lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

// Four queries a pass over the triangle: each column, loaded (and widened) once, serves them
// all; the B mod 4 left over go through the single-query kernel `one`.
template <typename T>
void panel_mm_t(const T* P, const double* X, std::size_t B, std::size_t n, double* Y,
                void (*one)(const T*, const double*, double*, std::size_t)) {
    std::size_t b = 0;
    for (; b + 4 <= B; b += 4) {
        const double* Xb = X + b * n;
        double* Yb = Y + b * n;
        for (std::size_t p = 0; p < panel_count(n); ++p) {
            const T* Pp = P + panel_offset(p);
            const std::size_t c = std::min(kPanel * (p + 1), n);
            __m256d lo[4], hi[4];
            for (int q = 0; q < 4; ++q) lo[q] = _mm256_setzero_pd(), hi[q] = _mm256_setzero_pd();
            for (std::size_t j = 0; j < c; ++j) {
                __m256d rl, rh;
                load_col(Pp + 8 * j, rl, rh);
                for (int q = 0; q < 4; ++q) {
                    const __m256d xq = _mm256_broadcast_sd(Xb + q * n + j);
                    lo[q] = _mm256_fmadd_pd(rl, xq, lo[q]);
                    hi[q] = _mm256_fmadd_pd(rh, xq, hi[q]);
                }
            }
            for (int q = 0; q < 4; ++q) store_panel(Yb + q * n, p, n, lo[q], hi[q]);
        }
    }
    for (; b < B; ++b) one(P, X + b * n, Y + b * n, n);
}

// y = R^T x: per panel, the 8 values of x it multiplies in two registers, one FMA pair per
// column into that column's 8-lane accumulator (L1-resident); the lanes summed at the end.
// The four sums of c0..c3's lanes, as one register [sum c0, sum c1, sum c2, sum c3].
inline __m256d hsum4(__m256d c0, __m256d c1, __m256d c2, __m256d c3) {
    const __m256d t0 = _mm256_hadd_pd(c0, c1);  // c0 01, c1 01, c0 23, c1 23
    const __m256d t1 = _mm256_hadd_pd(c2, c3);
    return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20),
                         _mm256_permute2f128_pd(t0, t1, 0x31));
}

// G[a][0..3] for rows x of X against four rows y0..y3 of Y (R rows of X: 1 or 2).
template <int R>
inline void tile_nt(const double* x, std::size_t ldx, const double* y, std::size_t ldy,
                    std::size_t len, double* G, std::size_t ldg) {
    __m256d c[R][4];
    for (int a = 0; a < R; ++a)
        for (int b = 0; b < 4; ++b) c[a][b] = _mm256_setzero_pd();
    std::size_t k = 0;
    for (; k + 4 <= len; k += 4) {
        const __m256d y0 = _mm256_loadu_pd(y + k), y1 = _mm256_loadu_pd(y + ldy + k);
        const __m256d y2 = _mm256_loadu_pd(y + 2 * ldy + k), y3 = _mm256_loadu_pd(y + 3 * ldy + k);
        for (int a = 0; a < R; ++a) {
            const __m256d xa = _mm256_loadu_pd(x + a * ldx + k);
            c[a][0] = _mm256_fmadd_pd(xa, y0, c[a][0]);
            c[a][1] = _mm256_fmadd_pd(xa, y1, c[a][1]);
            c[a][2] = _mm256_fmadd_pd(xa, y2, c[a][2]);
            c[a][3] = _mm256_fmadd_pd(xa, y3, c[a][3]);
        }
    }
    for (int a = 0; a < R; ++a) {
        alignas(32) double s[4];
        _mm256_store_pd(s, hsum4(c[a][0], c[a][1], c[a][2], c[a][3]));
        for (std::size_t kk = k; kk < len; ++kk)
            for (int b = 0; b < 4; ++b) s[b] += x[a * ldx + kk] * y[b * ldy + kk];
        for (int b = 0; b < 4; ++b) G[a * ldg + b] = s[b];
    }
}

void gemm_nt(const double* X, std::size_t ldx, const double* Y, std::size_t ldy, std::size_t m,
             std::size_t nc, std::size_t len, double* G, std::size_t ldg) {
    const std::size_t nc4 = nc - nc % 4;
    std::size_t a = 0;
    for (; a + 2 <= m; a += 2)
        for (std::size_t b = 0; b < nc4; b += 4)
            tile_nt<2>(X + a * ldx, ldx, Y + b * ldy, ldy, len, G + a * ldg + b, ldg);
    for (; a < m; ++a)
        for (std::size_t b = 0; b < nc4; b += 4)
            tile_nt<1>(X + a * ldx, ldx, Y + b * ldy, ldy, len, G + a * ldg + b, ldg);
    for (a = 0; a < m; ++a)
        for (std::size_t b = nc4; b < nc; ++b) G[a * ldg + b] = dot(X + a * ldx, Y + b * ldy, len);
}

void panel_tmv(const double* P, const double* x, double* y, std::size_t n, double* work) {
    std::fill(work, work + kPanel * n, 0.0);
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n), rows = std::min(kPanel, n - kPanel * p);
        alignas(32) double xs[kPanel] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::copy(x + kPanel * p, x + kPanel * p + rows, xs);
        const __m256d xlo = _mm256_load_pd(xs), xhi = _mm256_load_pd(xs + 4);
        for (std::size_t j = 0; j < c; ++j) {
            double* a = work + kPanel * j;
            const double* e = Pp + kPanel * j;
            _mm256_storeu_pd(a, _mm256_fmadd_pd(_mm256_loadu_pd(e), xlo, _mm256_loadu_pd(a)));
            _mm256_storeu_pd(a + 4,
                             _mm256_fmadd_pd(_mm256_loadu_pd(e + 4), xhi, _mm256_loadu_pd(a + 4)));
        }
    }
    for (std::size_t j = 0; j < n; ++j)
        y[j] = hsum(_mm256_add_pd(_mm256_loadu_pd(work + kPanel * j),
                                  _mm256_loadu_pd(work + kPanel * j + 4)));
}

void panel_mm(const double* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    panel_mm_t(P, X, B, n, Y, panel_mv);
}

// float32 panels, one query: float32 products (one column of 8 rows a register) against x
// rounded to float32 once per block of 8 columns, each block summed as
// ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7)) in float32 and widened into the two float64 halves of
// the panel: the arithmetic of scalar.cpp, bit for bit (kernels.hpp states the error). Two
// panels a pass share each block's x.
inline void x_f32(const double* x, std::size_t left, float* xs) {
    if (left >= kPanel) {
        _mm_store_ps(xs, _mm256_cvtpd_ps(_mm256_loadu_pd(x)));
        _mm_store_ps(xs + 4, _mm256_cvtpd_ps(_mm256_loadu_pd(x + 4)));
    } else {
        for (std::size_t k = 0; k < kPanel; ++k) xs[k] = k < left ? static_cast<float>(x[k]) : 0.0f;
    }
}

// lo, hi += widen(block sum) for the columns at A (the first `left` of 8).
inline void block_f32(const float* A, const float* xs, std::size_t left, __m256d& lo,
                      __m256d& hi) {
    __m256 q[kPanel];
    for (std::size_t k = 0; k < kPanel; ++k)
        q[k] = k < left ? _mm256_mul_ps(_mm256_loadu_ps(A + 8 * k), _mm256_broadcast_ss(xs + k))
                        : _mm256_setzero_ps();
    const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(q[0], q[4]), _mm256_add_ps(q[2], q[6])),
                                   _mm256_add_ps(_mm256_add_ps(q[1], q[5]), _mm256_add_ps(q[3], q[7])));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
}

// The columns j .. c - 1 of one panel (j a multiple of 8).
inline void panel_f32_from(const float* A, const double* x, std::size_t j, std::size_t c,
                           __m256d& lo, __m256d& hi) {
    alignas(16) float xs[kPanel];
    for (; j + kPanel <= c; j += kPanel) {
        x_f32(x + j, kPanel, xs);
        block_f32(A + 8 * j, xs, kPanel, lo, hi);
    }
    if (j < c) {
        x_f32(x + j, c - j, xs);
        block_f32(A + 8 * j, xs, c - j, lo, hi);
    }
}

void panel_mv_f32(const float* P, const double* x, double* y, std::size_t n) {
    const std::size_t np = panel_count(n);
    std::size_t p = 0;
    for (; p + 2 <= np; p += 2) {
        const float* A = P + panel_offset(p);
        const float* B = P + panel_offset(p + 1);
        const std::size_t c = kPanel * (p + 1);
        __m256d al = _mm256_setzero_pd(), ah = _mm256_setzero_pd();
        __m256d bl = _mm256_setzero_pd(), bh = _mm256_setzero_pd();
        alignas(16) float xs[kPanel];
        for (std::size_t j = 0; j < c; j += kPanel) {
            x_f32(x + j, kPanel, xs);
            block_f32(A + 8 * j, xs, kPanel, al, ah);
            block_f32(B + 8 * j, xs, kPanel, bl, bh);
        }
        panel_f32_from(B, x, c, std::min(c + kPanel, n), bl, bh);  // only B can be partial
        store_panel(y, p, n, al, ah);
        store_panel(y, p + 1, n, bl, bh);
    }
    if (p < np) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        panel_f32_from(P + panel_offset(p), x, 0, n, lo, hi);
        store_panel(y, p, n, lo, hi);
    }
}

// float32 panels, batches: widened columns, float64 products for the block's 4 queries.
void panel_mm_f32(const float* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    panel_mm_t(P, X, B, n, Y, panel_mv_f32);
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

// 32 columns (four registers) at a time across all of a text's tokens, so each accumulator
// stays in a register while the rows stream past; then an 8-wide and a masked-scalar tail.
void embed_pool(const float* T, std::size_t dim, const float* w, const std::int32_t* ids,
                const std::int64_t* offsets, std::size_t B, float* out) {
    for (std::size_t b = 0; b < B; ++b) {
        float* o = out + b * dim;
        const std::int64_t lo = offsets[b], hi = offsets[b + 1];
        std::size_t j = 0;
        for (; j + 32 <= dim; j += 32) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (std::int64_t i = lo; i < hi; ++i) {
                const std::size_t t = static_cast<std::size_t>(ids[i]);
                const __m256 wt = _mm256_set1_ps(w[t]);
                const float* r = T + t * dim + j;
                a0 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(r), a0);
                a1 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(r + 8), a1);
                a2 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(r + 16), a2);
                a3 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(r + 24), a3);
            }
            _mm256_storeu_ps(o + j, a0);
            _mm256_storeu_ps(o + j + 8, a1);
            _mm256_storeu_ps(o + j + 16, a2);
            _mm256_storeu_ps(o + j + 24, a3);
        }
        for (; j + 8 <= dim; j += 8) {
            __m256 a = _mm256_setzero_ps();
            for (std::int64_t i = lo; i < hi; ++i) {
                const std::size_t t = static_cast<std::size_t>(ids[i]);
                a = _mm256_fmadd_ps(_mm256_set1_ps(w[t]), _mm256_loadu_ps(T + t * dim + j), a);
            }
            _mm256_storeu_ps(o + j, a);
        }
        for (; j < dim; ++j) {
            float a = 0.0f;
            for (std::int64_t i = lo; i < hi; ++i) {
                const std::size_t t = static_cast<std::size_t>(ids[i]);
                a = std::fma(w[t], T[t * dim + j], a);
            }
            o[j] = a;
        }
        normalize(o, dim);
    }
}

}  // namespace

const Kernels& avx2_kernels() {
    static const Kernels k{"avx2", dot, syr, gemv_rect, gemv_t, panel_mv, panel_tmv, panel_mm,
                           gemm_nt, panel_mv_f32, panel_mm_f32, embed_pool};
    return k;
}

}  // namespace mixllm
