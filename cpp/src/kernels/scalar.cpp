// Scalar kernels: the C++ oracle every SIMD backend is tested against.
//   dot        s = sum_i a_i b_i
//   syr        M_ij += c u_i u_j
//   gemv_rect  y_i = sum_j M_ij x_j            (M m x n)
//   gemv_t     y_j = sum_i x_i M_ij            (M m x n, rows in order)
//   panel_mv   y_i = sum_{j<=i} R_ij x_j       (R in the panel layout, kernels.hpp)
//   panel_tmv  y_j = sum_{i>=j} R_ij x_i      (panel layout: 8-lane accumulators per column)
//   panel_mm   Y_bi = sum_{j<=i} R_ij X_bj     (R in the panel layout)
//   gemm_nt    G_ab = sum_k X_ak Y_bk          (one dot a product)
//   panel_mv_f32  the same on float32 panels: float32 products and sums over blocks of 8
//               columns, the block sums in float64 (kernels.hpp)
//   panel_mm_f32  one panel_mv_f32 a query
//   embed_pool o_b = s_b / max(||s_b||, 1e-12), s_b = sum_i w[id_i] T[id_i]  (float32)
#include "mixllm/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mixllm {
namespace {

double dot(const double* a, const double* b, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

void syr(double* M, const double* u, double c, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const double ci = c * u[i];
        double* row = M + i * n;
        for (std::size_t j = 0; j < n; ++j) row[j] += ci * u[j];
    }
}

void gemv_rect(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    for (std::size_t i = 0; i < m; ++i) y[i] = dot(M + i * n, x, n);
}

void gemv_t(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    std::fill(y, y + n, 0.0);
    for (std::size_t i = 0; i < m; ++i) {
        const double xi = x[i];
        const double* Mi = M + i * n;
        for (std::size_t j = 0; j < n; ++j) y[j] += xi * Mi[j];
    }
}

void panel_mv(const double* P, const double* x, double* y, std::size_t n) {
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n);
        for (std::size_t r = 0; r < kPanel && kPanel * p + r < n; ++r) {
            double s = 0.0;
            for (std::size_t j = 0; j < c; ++j) s += Pp[kPanel * j + r] * x[j];
            y[kPanel * p + r] = s;
        }
    }
}

void panel_tmv(const double* P, const double* x, double* y, std::size_t n, double* work) {
    std::fill(work, work + kPanel * n, 0.0);
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const double* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n), rows = std::min(kPanel, n - kPanel * p);
        for (std::size_t j = 0; j < c; ++j)
            for (std::size_t r = 0; r < rows; ++r)
                work[kPanel * j + r] += Pp[kPanel * j + r] * x[kPanel * p + r];
    }
    for (std::size_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (std::size_t r = 0; r < kPanel; ++r) s += work[kPanel * j + r];
        y[j] = s;
    }
}

void panel_mm(const double* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    for (std::size_t b = 0; b < B; ++b) panel_mv(P, X + b * n, Y + b * n, n);
}

// The float32 decision's arithmetic, which the SIMD kernels reproduce bit for bit (kernels.hpp):
// x rounded to float32, float32 products, each block of 8 columns summed as
// ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7)) in float32 (zeros past the last column), the block sums
// added in float64 in column order. Built with -ffp-contract=off: no fused multiply-add.
void gemm_nt(const double* X, std::size_t ldx, const double* Y, std::size_t ldy, std::size_t m,
             std::size_t nc, std::size_t len, double* G, std::size_t ldg) {
    for (std::size_t a = 0; a < m; ++a)
        for (std::size_t b = 0; b < nc; ++b) G[a * ldg + b] = dot(X + a * ldx, Y + b * ldy, len);
}

void panel_mv_f32(const float* P, const double* x, double* y, std::size_t n) {
    for (std::size_t p = 0; p < panel_count(n); ++p) {
        const float* Pp = P + panel_offset(p);
        const std::size_t c = std::min(kPanel * (p + 1), n);
        for (std::size_t r = 0; r < kPanel && kPanel * p + r < n; ++r) {
            double s = 0.0;
            for (std::size_t j = 0; j < c; j += kPanel) {
                float q[kPanel] = {};
                for (std::size_t k = 0; k < kPanel && j + k < c; ++k)
                    q[k] = Pp[kPanel * (j + k) + r] * static_cast<float>(x[j + k]);
                s += static_cast<double>(((q[0] + q[4]) + (q[2] + q[6])) +
                                         ((q[1] + q[5]) + (q[3] + q[7])));
            }
            y[kPanel * p + r] = s;
        }
    }
}

void panel_mm_f32(const float* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    for (std::size_t b = 0; b < B; ++b) panel_mv_f32(P, X + b * n, Y + b * n, n);
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

void embed_pool(const float* T, std::size_t dim, const float* w, const std::int32_t* ids,
                const std::int64_t* offsets, std::size_t B, float* out) {
    for (std::size_t b = 0; b < B; ++b) {
        float* o = out + b * dim;
        std::fill(o, o + dim, 0.0f);
        for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i) {
            const std::size_t t = static_cast<std::size_t>(ids[i]);
            const float wt = w[t];
            const float* row = T + t * dim;
            for (std::size_t j = 0; j < dim; ++j) o[j] += wt * row[j];
        }
        normalize(o, dim);
    }
}

}  // namespace

const Kernels& scalar_kernels() {
    static const Kernels k{"scalar", dot, syr, gemv_rect, gemv_t, panel_mv, panel_tmv, panel_mm,
                           gemm_nt, panel_mv_f32, panel_mm_f32, embed_pool};
    return k;
}

}  // namespace mixllm
