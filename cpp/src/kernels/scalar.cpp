// Scalar kernels: the C++ oracle every SIMD backend is tested against.
//   dot        s = sum_i a_i b_i
//   gemv       y_i = sum_j M_ij x_j
//   quad       s = sum_i x_i sum_j M_ij x_j
//   syr        M_ij += c u_i u_j
//   quad_batch out_b = x_b^T M x_b
//   gemv_rect  y_i = sum_j M_ij x_j            (M m x n)
//   tpmv       y_i = sum_{j<=i} R_ij x_j       (R lower triangular, packed by rows)
//   tpmm       Y_bi = sum_{j<=i} R_ij X_bj
//   panel_mv   y_i = sum_{j<=i} R_ij x_j       (R in the panel layout, kernels.hpp)
//   panel_mm   Y_bi = sum_{j<=i} R_ij X_bj     (R in the panel layout)
#include "mixllm/kernels.hpp"

#include <algorithm>

namespace mixllm {
namespace {

double dot(const double* a, const double* b, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

void gemv(const double* M, const double* x, double* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = dot(M + i * n, x, n);
}

double quad(const double* M, const double* x, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += x[i] * dot(M + i * n, x, n);
    return s;
}

void syr(double* M, const double* u, double c, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const double ci = c * u[i];
        double* row = M + i * n;
        for (std::size_t j = 0; j < n; ++j) row[j] += ci * u[j];
    }
}

void quad_batch(const double* M, const double* X, std::size_t B, std::size_t n, double* out) {
    for (std::size_t b = 0; b < B; ++b) out[b] = quad(M, X + b * n, n);
}

void gemv_rect(const double* M, const double* x, double* y, std::size_t m, std::size_t n) {
    for (std::size_t i = 0; i < m; ++i) y[i] = dot(M + i * n, x, n);
}

void tpmv(const double* R, const double* x, double* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = dot(R + packed_row(i), x, i + 1);
}

void tpmm(const double* R, const double* X, std::size_t B, std::size_t n, double* Y) {
    for (std::size_t b = 0; b < B; ++b) tpmv(R, X + b * n, Y + b * n, n);
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

void panel_mm(const double* P, const double* X, std::size_t B, std::size_t n, double* Y) {
    for (std::size_t b = 0; b < B; ++b) panel_mv(P, X + b * n, Y + b * n, n);
}

}  // namespace

const Kernels& scalar_kernels() {
    static const Kernels k{"scalar", dot,      gemv,    quad,    syr,     quad_batch,
                           gemv_rect, tpmv, tpmm, panel_mv, panel_mm};
    return k;
}

}  // namespace mixllm
