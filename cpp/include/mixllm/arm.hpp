// One arm's algebra (internal to the core): the exact operations on an ArmState and its Base
// that pool.hpp's opening comment derives -- whitening, appending a correction row (bordered
// inverse), the exact refactorisation, the fold into a base of its own, theta and the dense
// view. No locking here: the Pool calls these under its lock (or on a private copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mixllm/pool.hpp"

namespace mixllm::arm {

// Process-unique numbers: base ids (they key the query cache) and membership versions.
std::uint64_t next_base_id();
std::uint64_t next_version();

// G of a base as a dense d x d matrix.
std::vector<double> base_matrix(const Base& B, std::size_t d);
// A base G = A, factorised exactly (R, its panels, float32 panels); throws std::runtime_error
// naming `who` when A is not numerically positive definite.
std::shared_ptr<Base> dense_base(std::vector<double> A, std::size_t d, const std::string& who);
// The exponent m of the renormalisation of an arm with scale c (pool.hpp): 4^m <= c < 4^(m+1).
int renorm_exponent(double c);
// G <- 4^m G in place, exactly (A times 4^m, R and its panels times 2^-m, float32 panels
// derived again), with a new id.
void scale_base(Base& B, int m, std::size_t d);
// A base G = ridge * I.
std::shared_ptr<const Base> scalar_base(double ridge);
// A += U^T U for r rows U (r x d).
void add_gram(std::vector<double>& A, const double* U, std::size_t r, std::size_t d);
// v = R x (float64).
void whiten(const Base& B, const double* x, double* v, std::size_t d);
// out = R^T w.
void unwhiten(const Base& B, const double* w, double* out, std::size_t d);
// A floor c > 0 with G >= c S for the arm's base G (Cholesky of G - c S succeeds), from a Lanczos
// estimate (20 steps) of 1 / lambda_max(R_G S R_G^T) lowered until certified; 1 when G is S;
// 0 when none was found. O(d^3): a fold's cost again at most.
double certify_floor(const Base& G, const Base& S, std::size_t d);

// A ceiling C with G <= C S (Cholesky of C S - G succeeds), from a Lanczos estimate (20
// steps) of lambda_max(R_S G R_S^T) raised until certified; 1 when G is S; 0 when none was found.
// O(d^3), as certify_floor.
double certify_ceiling(const Base& G, const Base& S, std::size_t d);
// Gershgorin's bound on lambda_max(I + W W^T) of the arm's corrections: max of s.crow, 1 for
// none. A = G + U^T U <= gersh(s) G, so the arm's bonus >= its base's bonus / sqrt(gersh).
double gersh(const ArmState& s);
// Row sums of |I + W W^T| for r rows W (r x d), in append_row's order of summation.
std::vector<double> gersh_rows(const double* W, std::size_t r, std::size_t d);
// crow: row sums of |I + W W^T| from W, summed in column order (append_row keeps the same
// sums in the same order, so a recomputation gives the same bits).
void correction_rows(ArmState& s, std::size_t d);

// Cinv, beta, omega and theta recomputed exactly from U, b and the base; since_refactor = 0.
void refactor(ArmState& s, std::size_t d, std::size_t T);
// A = G + U^T U formed and factorised into a base of the arm's own; rank 0. The ceiling
// compounds: the new base is <= gersh(s) G <= gersh(s) ceil S (the caller may certify it).
// Renormalised (pool.hpp): the new base is 4^m (G + U^T U), m = renorm_exponent(scale), the
// scale, b and the ceiling follow; returns 4^m, by which the caller scales a kept floor.
double fold(ArmState& s, std::size_t d, std::size_t T);
// Appends the row u (whitened w = R u) with targets y; theta takes one recursive-least-squares
// step (theta += A'^{-1} u (y - theta u)^T, A' = A + u u^T: O(d^2/2 + r d)). Returns false, s untouched, when the
// bordered inverse would not be accurate on this base (the caller folds and retries); throws
// std::runtime_error, s untouched, when the row or the statistics would overflow.
bool append_row(ArmState& s, std::size_t d, std::size_t T, std::size_t max_rank, const double* u,
                const double* w, const double* y);
// theta (T x d) = A^{-1} b from the representation.
std::vector<double> theta(const ArmState& s, std::size_t d, std::size_t T);
// The arm as dense matrices (A, Ainv as the decisions see it, b, theta); O(d^3).
ArmView view(const ArmState& s, std::size_t d, std::size_t T);

// Per-thread scratch of at least n doubles, so that the hot paths do not allocate.
std::vector<double>& scratch(std::size_t n);

}  // namespace mixllm::arm
