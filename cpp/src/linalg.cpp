// Exact SPD factorisations for the bases (fit, fold, certifications) and the corrections'
// inverse: A = L L^T (Cholesky, row-major, lower), the rows of U = L^{-T} (= the columns of
// R = L^{-1}), and A^{-1} = U^T U... entry (i, j) the dot of rows i and j of U.
//
// Blocked (left-looking) so that ~all the O(n^3) work is one kernel, gemm_nt (C = X Y^T over
// contiguous rows, register-tiled per instruction set), on blocks of kBlock columns; what is
// left inside a block (O(n^2 kBlock)) is short contiguous loops:
//   Cholesky, block column J = [j0, j1): T = A[j0:, J] - L[j0:, :j0] L[J, :j0]^T (gemm_nt),
//     then the unblocked right-looking factorisation of the panel T (n - j0 rows, |J| columns):
//     L[j][j] = sqrt(T[j][j]), L[i][j] = T[i][j] / L[j][j], T[i][j'] -= L[i][j] L[j'][j].
//   Inverse, U[j][i] = (delta_ij - sum_{j<=k<i} L[i][k] U[j][k]) / L[i][i] (L y = e_j): per
//     block of columns J and of rows I (i0 >= j0), T = L[I, j0:i0] U[J, j0:i0]^T (gemm_nt; U
//     is zero left of its diagonal, so every product of J may start at j0), then the rows of I
//     in order, each adding its new entries into the later rows' T.
// Same operations whatever the data, so the results are deterministic for a backend; backends
// differ only in gemm_nt's order of summation (within the tests' tolerances).
#include "mixllm/linalg.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mixllm/kernels.hpp"

namespace mixllm {

namespace {

constexpr std::size_t kBlock = 32;

std::vector<double>& panel_scratch(std::size_t n) {
    thread_local std::vector<double> buf;
    if (buf.size() < n) buf.resize(n);
    return buf;
}

// L (lower, row-major; the strict upper triangle is left as it was) with A = L L^T; false if A
// is not numerically positive definite.
bool cholesky(const double* A, std::size_t n, double* L) {
    const Kernels& K = kernels();
    std::vector<double>& buf = panel_scratch(n * kBlock + kBlock);
    double* T = buf.data();
    double* col = T + n * kBlock;
    for (std::size_t j0 = 0; j0 < n; j0 += kBlock) {
        const std::size_t w = std::min(kBlock, n - j0), m = n - j0;
        if (j0 > 0) {
            K.gemm_nt(L + j0 * n, n, L + j0 * n, n, m, w, j0, T, w);
            for (std::size_t a = 0; a < m; ++a)
                for (std::size_t b = 0; b < w; ++b)
                    T[a * w + b] = A[(j0 + a) * n + j0 + b] - T[a * w + b];
        } else {
            for (std::size_t a = 0; a < m; ++a)
                for (std::size_t b = 0; b < w; ++b) T[a * w + b] = A[(j0 + a) * n + j0 + b];
        }
        for (std::size_t b = 0; b < w; ++b) {
            const double piv = T[b * w + b];
            if (!(piv > 0.0) || !std::isfinite(piv)) return false;
            const double ljj = std::sqrt(piv);
            T[b * w + b] = ljj;
            for (std::size_t a = b + 1; a < m; ++a) T[a * w + b] /= ljj;
            // col[c] = L[j0 + c][j0 + b] for the block's later columns c
            for (std::size_t c = b + 1; c < w; ++c) col[c] = T[c * w + b];
            for (std::size_t a = b + 1; a < m; ++a) {
                const double lab = T[a * w + b];
                double* Ta = T + a * w;
                const std::size_t cmax = std::min(a + 1, w);
                for (std::size_t c = b + 1; c < cmax; ++c) Ta[c] -= lab * col[c];
            }
        }
        for (std::size_t a = 0; a < m; ++a) {
            const std::size_t cmax = std::min(a + 1, w);
            std::copy(T + a * w, T + a * w + cmax, L + (j0 + a) * n + j0);
        }
    }
    return true;
}

// L (lower, row-major in work) and U (row j = column j of L^{-1}, zero left of index j).
bool factor(const double* A, std::size_t n, double* work) {
    const Kernels& K = kernels();
    double* L = work;          // lower triangle used
    double* U = work + n * n;  // row j holds column j of L^{-1}, non-zero from index j on
    if (!cholesky(A, n, L)) return false;
    std::fill(U, U + n * n, 0.0);
    std::vector<double>& buf = panel_scratch(kBlock * kBlock + kBlock);
    double* T = buf.data();        // T[a][b]: row i0 + a, column j0 + b
    double* y = T + kBlock * kBlock;  // the row just solved, y[b] = U[j0 + b][i]
    for (std::size_t j0 = 0; j0 < n; j0 += kBlock) {
        const std::size_t w = std::min(kBlock, n - j0);
        for (std::size_t i0 = j0; i0 < n; i0 += kBlock) {
            const std::size_t h = std::min(kBlock, n - i0);
            if (i0 > j0)
                K.gemm_nt(L + i0 * n + j0, n, U + j0 * n + j0, n, h, w, i0 - j0, T, w);
            else
                std::fill(T, T + h * w, 0.0);
            for (std::size_t a = 0; a < h; ++a) {
                const std::size_t i = i0 + a;
                const double lii = L[i * n + i];
                // columns j = j0 + b <= i only (U[j][i] = 0 for i < j)
                const std::size_t bmax = std::min(w, i + 1 - j0);
                for (std::size_t b = 0; b < bmax; ++b) {
                    const double rhs = (j0 + b == i ? 1.0 : 0.0) - T[a * w + b];
                    y[b] = rhs / lii;
                    U[(j0 + b) * n + i] = y[b];
                }
                for (std::size_t a2 = a + 1; a2 < h; ++a2) {
                    const double l = L[(i0 + a2) * n + i];
                    double* Ta = T + a2 * w;
                    for (std::size_t b = 0; b < bmax; ++b) Ta[b] += l * y[b];
                }
            }
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
    // Ainv = L^{-T} L^{-1} = U^T U... entry (i, j) the dot of rows i and j of U, which vanish
    // left of max(i, j): blocks of rows J >= I from J's first column on.
    std::vector<double>& buf = panel_scratch(kBlock * kBlock);
    double* T = buf.data();
    for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
        const std::size_t h = std::min(kBlock, n - i0);
        for (std::size_t j0 = i0; j0 < n; j0 += kBlock) {
            const std::size_t w = std::min(kBlock, n - j0);
            K.gemm_nt(U + i0 * n + j0, n, U + j0 * n + j0, n, h, w, n - j0, T, w);
            for (std::size_t a = 0; a < h; ++a)
                for (std::size_t b = 0; b < w; ++b) {
                    const std::size_t i = i0 + a, j = j0 + b;
                    if (j < i) continue;  // the diagonal block's lower half: from its mirror
                    Ainv[i * n + j] = Ainv[j * n + i] = T[a * w + b];
                }
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
