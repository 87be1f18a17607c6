// Exact SPD inverse for re-anchoring: A = L L^T (Cholesky, row-major, lower), then the rows of
// U = L^{-T} (= columns of L^{-1}) by forward substitution, then Ainv_ij = sum_{k>=max(i,j)}
// U_ik U_jk. All inner loops are contiguous dot products, so they run on the active kernels.
#include "mixllm/linalg.hpp"

#include <algorithm>
#include <cmath>

#include "mixllm/kernels.hpp"

namespace mixllm {

namespace {

// L (lower, row-major) with A = L L^T; false if A is not numerically positive definite.
bool cholesky(const double* A, std::size_t n, double* L) {
    const Kernels& K = kernels();
    for (std::size_t i = 0; i < n; ++i) {
        double* Li = L + i * n;
        for (std::size_t j = 0; j < i; ++j) {
            const double* Lj = L + j * n;
            Li[j] = (A[i * n + j] - K.dot(Li, Lj, j)) / Lj[j];
        }
        const double d = A[i * n + i] - K.dot(Li, Li, i);
        if (!(d > 0.0) || !std::isfinite(d)) return false;
        Li[i] = std::sqrt(d);
    }
    return true;
}

// L (lower, row-major in work) and U (row j = column j of L^{-1}, from index j on).
bool factor(const double* A, std::size_t n, double* work) {
    const Kernels& K = kernels();
    double* L = work;          // lower triangle used
    double* U = work + n * n;  // row j holds column j of L^{-1}, non-zero from index j on
    if (!cholesky(A, n, L)) return false;
    // Column j of L^{-1}: solve L y = e_j; y_i = 0 for i < j.
    for (std::size_t j = 0; j < n; ++j) {
        double* y = U + j * n;
        std::fill(y, y + j, 0.0);
        for (std::size_t i = j; i < n; ++i) {
            const double* Li = L + i * n;
            const double rhs = (i == j ? 1.0 : 0.0) - K.dot(Li + j, y + j, i - j);
            y[i] = rhs / Li[i];
        }
    }
    return true;
}

}  // namespace

bool positive_definite(const double* A, std::size_t n, double* work) {
    return cholesky(A, n, work);
}

bool inverse_cholesky_factor(const double* A, double* R, std::size_t n, double* work) {
    if (!factor(A, n, work)) return false;
    const double* U = work + n * n;
    for (std::size_t i = 0; i < n; ++i) {
        double* Ri = R + packed_row(i);
        for (std::size_t j = 0; j <= i; ++j) Ri[j] = U[j * n + i];
    }
    return true;
}

bool spd_inverse(const double* A, double* Ainv, std::size_t n, double* work) {
    if (!factor(A, n, work)) return false;
    const Kernels& K = kernels();
    const double* U = work + n * n;
    // Ainv = L^{-T} L^{-1}: entry (i, j) is the dot of columns i and j of L^{-1}.
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = i; j < n; ++j) {
            const std::size_t k0 = j;  // both columns vanish above max(i, j) = j
            const double v = K.dot(U + i * n + k0, U + j * n + k0, n - k0);
            Ainv[i * n + j] = v;
            Ainv[j * n + i] = v;
        }
    }
    return true;
}

void pack_panels(const double* R, double* P, std::size_t n) {
    std::fill(P, P + panel_size(n), 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t p = i / kPanel, r = i % kPanel;
        double* Pp = P + panel_offset(p);
        for (std::size_t j = 0; j <= i; ++j) Pp[kPanel * j + r] = R[packed_row(i) + j];
    }
}

void panels_to_f32(const double* P, float* P32, std::size_t n) {
    const std::size_t m = panel_size(n);
    for (std::size_t i = 0; i < m; ++i) P32[i] = static_cast<float>(P[i]);
}

}  // namespace mixllm
