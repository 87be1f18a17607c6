// Scalar kernels: the C++ oracle every SIMD backend is tested against.
//   dot        s = sum_i a_i b_i
//   gemv       y_i = sum_j M_ij x_j
//   quad       s = sum_i x_i sum_j M_ij x_j
//   syr        M_ij += c u_i u_j
//   quad_batch out_b = x_b^T M x_b
//   gemv_rect  y_i = sum_j M_ij x_j            (M m x n)
//   tpmv       y_i = sum_{j<=i} R_ij x_j       (R lower triangular, packed by rows)
//   tpmm       Y_bi = sum_{j<=i} R_ij X_bj
#include "mixllm/kernels.hpp"

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

}  // namespace

const Kernels& scalar_kernels() {
    static const Kernels k{"scalar", dot, gemv, quad, syr, quad_batch, gemv_rect, tpmv, tpmm};
    return k;
}

}  // namespace mixllm
