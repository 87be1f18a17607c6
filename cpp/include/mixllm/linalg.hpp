// Dense symmetric positive-definite helpers used to re-anchor the Sherman-Morrison inverse.
#pragma once

#include <cstddef>

namespace mixllm {

// Ainv = A^{-1} for a symmetric positive-definite A (row-major n x n), via Cholesky
// A = L L^T and Ainv = L^{-T} L^{-1}. `work` must hold 2 * n * n doubles.
// Returns false (and leaves Ainv untouched) if A is not numerically positive definite.
bool spd_inverse(const double* A, double* Ainv, std::size_t n, double* work);

// R = L^{-1} for A = L L^T (Cholesky of a symmetric positive-definite A, row-major n x n),
// written packed by rows (lower triangle, n(n+1)/2 doubles; see packed_row), so that
// A^{-1} = R^T R and x^T A^{-1} x = |R x|^2. `work` must hold 2 * n * n doubles.
// Returns false (and leaves R untouched) if A is not numerically positive definite.
bool inverse_cholesky_factor(const double* A, double* R, std::size_t n, double* work);

// Whether the symmetric A (row-major n x n) is numerically positive definite: its Cholesky
// factorisation succeeds (so A + E is positive definite for a perturbation E of the order of
// n 2^-53 |L||L^T|, Cholesky's backward error). `work` must hold n * n doubles.
bool positive_definite(const double* A, std::size_t n, double* work);

// The packed-by-rows lower triangle R (see packed_row) in the panel layout of the hot-path
// kernels (see panel_offset); P must hold panel_size(n) doubles. A pure copy: bit-exact.
void pack_panels(const double* R, double* P, std::size_t n);
// The float64 panels P (panel_size(n) entries) rounded to nearest float32 into P32.
void panels_to_f32(const double* P, float* P32, std::size_t n);

}  // namespace mixllm
