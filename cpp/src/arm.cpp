// One arm's algebra: the Woodbury representation of pool.hpp, operation by operation.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mixllm/arm.hpp"
#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

namespace mixllm::arm {

std::uint64_t next_base_id() {
    static std::atomic<std::uint64_t> n{1};
    return n.fetch_add(1, std::memory_order_relaxed);
}

// Membership versions are unique across pools, so that a caller's memo of the names can never
// match a different pool that replaced the one it came from.
std::uint64_t next_version() {
    static std::atomic<std::uint64_t> n{1};
    return n.fetch_add(1, std::memory_order_relaxed);
}

// out = R^T w for the base's factor (the panels, transposed: kernels.hpp panel_tmv).
void unwhiten(const Base& B, const double* w, double* out, std::size_t d) {
    if (B.scalar > 0.0) {
        const double c = 1.0 / std::sqrt(B.scalar);
        for (std::size_t i = 0; i < d; ++i) out[i] = c * w[i];
        return;
    }
    thread_local std::vector<double> work;
    if (work.size() < kPanel * d) work.resize(kPanel * d);
    kernels().panel_tmv(B.P.data(), w, out, d, work.data());
}

namespace {

// (I + W W^T)^{-1}, r x r, exactly (Cholesky).
std::vector<double> correction_inverse(const std::vector<double>& W, std::size_t r, std::size_t d) {
    const Kernels& K = kernels();
    std::vector<double> C(r * r), inv(r * r), work(2 * r * r);
    for (std::size_t i = 0; i < r; ++i)
        for (std::size_t j = 0; j <= i; ++j) {
            const double c = K.dot(W.data() + i * d, W.data() + j * d, d) + (i == j ? 1.0 : 0.0);
            C[i * r + j] = C[j * r + i] = c;
        }
    if (r > 0 && !spd_inverse(C.data(), inv.data(), r, work.data()))
        throw std::runtime_error("correction matrix is not positive definite");
    return inv;
}

}  // namespace

std::vector<double> base_matrix(const Base& B, std::size_t d) {
    if (B.scalar <= 0.0) return B.A;
    std::vector<double> A(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i) A[i * d + i] = B.scalar;
    return A;
}

std::shared_ptr<Base> dense_base(std::vector<double> A, std::size_t d, const std::string& who) {
    auto B = std::make_shared<Base>();
    B->R.resize(packed_row(d));
    std::vector<double> work(2 * d * d);
    if (!inverse_cholesky_factor(A.data(), B->R.data(), d, work.data()))
        throw std::runtime_error("design matrix of '" + who +
                                 "' is not positive definite; increase ridge");
    B->P.resize(panel_size(d));
    pack_panels(B->R.data(), B->P.data(), d);
    B->P32.resize(panel_size(d));
    panels_to_f32(B->P.data(), B->P32.data(), d);
    B->A = std::move(A);
    B->id = next_base_id();
    return B;
}

int renorm_exponent(double c) {
    // ilogb(c) = e with 2^e <= c < 2^(e+1); m = floor(e / 2).
    const int e = std::ilogb(c);
    return e >= 0 ? e / 2 : -((1 - e) / 2);
}

void scale_base(Base& B, int m, std::size_t d) {
    if (m == 0) return;
    const double p = std::ldexp(1.0, 2 * m), q = std::ldexp(1.0, -m);
    if (B.scalar > 0.0) {
        B.scalar *= p;
    } else {
        for (double& a : B.A) a *= p;
        for (double& r : B.R) r *= q;
        pack_panels(B.R.data(), B.P.data(), d);
        panels_to_f32(B.P.data(), B.P32.data(), d);
    }
    B.id = next_base_id();  // whitened copies cached for the old values are not reused
}

// A += U^T U for r rows U (r x d): entry (i, j) the dot of rows i and j of U^T, blocks of 32
// rows of the lower triangle a gemm_nt each (kernels.hpp), mirrored, instead of r rank-1
// passes over the whole of A.
void add_gram(std::vector<double>& A, const double* U, std::size_t r, std::size_t d) {
    if (r == 0) return;
    const Kernels& K = kernels();
    constexpr std::size_t kRows = 32;
    std::vector<double> Ut(d * r), G(kRows * d);
    for (std::size_t i = 0; i < r; ++i)
        for (std::size_t j = 0; j < d; ++j) Ut[j * r + i] = U[i * d + j];
    for (std::size_t i0 = 0; i0 < d; i0 += kRows) {
        const std::size_t h = std::min(kRows, d - i0), cols = i0 + h;
        K.gemm_nt(Ut.data() + i0 * r, r, Ut.data(), r, h, cols, r, G.data(), cols);
        for (std::size_t a = 0; a < h; ++a) {
            const std::size_t i = i0 + a;
            for (std::size_t j = 0; j <= i; ++j) {
                const double v = G[a * cols + j];
                A[i * d + j] += v;
                if (j != i) A[j * d + i] += v;
            }
        }
    }
}

std::shared_ptr<const Base> scalar_base(double ridge) {
    auto B = std::make_shared<Base>();
    B->scalar = ridge;
    B->id = next_base_id();
    return B;
}

void whiten(const Base& B, const double* x, double* v, std::size_t d) {
    if (B.scalar > 0.0) {
        const double c = 1.0 / std::sqrt(B.scalar);
        for (std::size_t i = 0; i < d; ++i) v[i] = c * x[i];
    } else {
        kernels().panel_mv(B.P.data(), x, v, d);
    }
}

namespace {

// The largest eigenvalue of the symmetric tridiagonal matrix (diagonal a, off-diagonal b) by
// bisection on Sturm counts (the number of eigenvalues below x).
double tridiagonal_max(const std::vector<double>& a, const std::vector<double>& b) {
    const std::size_t k = a.size();
    double lo = a[0], hi = a[0];
    for (std::size_t i = 0; i < k; ++i) {  // Gershgorin's interval
        const double r = (i > 0 ? std::fabs(b[i - 1]) : 0.0) + (i + 1 < k ? std::fabs(b[i]) : 0.0);
        lo = std::min(lo, a[i] - r), hi = std::max(hi, a[i] + r);
    }
    auto below = [&](double x) {
        std::size_t n = 0;
        double q = 1.0;
        for (std::size_t i = 0; i < k; ++i) {
            q = a[i] - x - (i > 0 ? b[i - 1] * b[i - 1] / q : 0.0);
            if (q == 0.0) q = -1e-300;
            n += q < 0.0;
        }
        return n;
    };
    for (int it = 0; it < 200 && hi - lo > 1e-15 * std::max(std::fabs(lo), std::fabs(hi)); ++it) {
        const double mid = 0.5 * (lo + hi);
        (below(mid) < k ? lo : hi) = mid;
    }
    return lo;
}

// lambda_max of R_W M R_W^T (R_W the inverse factor of base W, M dense d x d) by 20 steps of
// Lanczos (fully reorthogonalised; the largest Ritz value, <= lambda_max, so a bound from it
// must be certified). It converges far faster than the power iteration it replaces (30 steps
// whose estimate was more than 2% low for most ceilings, costing a second Cholesky test).
// 0 when the iteration breaks down at once.
double whitened_lambda_max(const Base& W, const std::vector<double>& M, std::size_t d) {
    const Kernels& K = kernels();
    const std::size_t steps = std::min<std::size_t>(d, 20);
    std::vector<double> Q(steps * d), y(d), z(d), alpha, beta;
    for (std::size_t i = 0; i < d; ++i) Q[i] = 1.0 / std::sqrt(static_cast<double>(d));
    for (std::size_t j = 0; j < steps; ++j) {
        const double* q = Q.data() + j * d;
        unwhiten(W, q, y.data(), d);
        K.gemv_rect(M.data(), y.data(), z.data(), d, d);
        whiten(W, z.data(), y.data(), d);
        const double a = K.dot(q, y.data(), d);
        if (!std::isfinite(a)) break;
        alpha.push_back(a);
        if (j + 1 == steps) break;
        for (std::size_t i = 0; i <= j; ++i) {  // y minus its projections on the basis
            const double* qi = Q.data() + i * d;
            const double c = K.dot(qi, y.data(), d);
            for (std::size_t t = 0; t < d; ++t) y[t] -= c * qi[t];
        }
        const double n = std::sqrt(K.dot(y.data(), y.data(), d));
        if (!(n > 1e-12 * std::fabs(a)) || !std::isfinite(n)) break;  // an invariant subspace
        beta.push_back(n);
        double* next = Q.data() + (j + 1) * d;
        for (std::size_t t = 0; t < d; ++t) next[t] = y[t] / n;
    }
    if (alpha.empty()) return 0.0;
    beta.resize(alpha.size() - 1);
    const double rho = tridiagonal_max(alpha, beta);
    return rho > 0.0 && std::isfinite(rho) ? rho : 0.0;
}

// The first of c0, c0 step, c0 step^2, ... (8 tries) for which the Cholesky factorisation of
// P - c Q (sign +1) or c Q - P (sign -1) succeeds; 0 when none does.
double certify_scale(const std::vector<double>& P, const std::vector<double>& Q, double c0,
                     double step, double sign, std::size_t d) {
    std::vector<double> M(d * d), work(d * d);
    double c = c0;
    for (int tries = 0; tries < 8; ++tries, c *= step) {
        for (std::size_t i = 0; i < d * d; ++i) M[i] = sign * (P[i] - c * Q[i]);
        if (positive_definite(M.data(), d, work.data())) return c;
    }
    return 0.0;
}

}  // namespace

double certify_floor(const Base& G, const Base& S, std::size_t d) {
    if (&G == &S || G.id == S.id) return 1.0;
    const std::vector<double> SA = base_matrix(S, d), GA = base_matrix(G, d);
    // 1 / lambda_max(R_G S R_G^T) may be too high (the estimate is low): lowered until
    // G - c S is certified.
    const double rho = whitened_lambda_max(G, SA, d);
    return rho > 0.0 ? certify_scale(GA, SA, 0.97 / rho, 0.7, 1.0, d) : 0.0;
}

double certify_ceiling(const Base& G, const Base& S, std::size_t d) {
    if (&G == &S || G.id == S.id) return 1.0;
    const std::vector<double> SA = base_matrix(S, d), GA = base_matrix(G, d);
    // lambda_max(R_S G R_S^T) may be too low: raised until C S - G is certified.
    const double rho = whitened_lambda_max(S, GA, d);
    return rho > 0.0 ? certify_scale(GA, SA, 1.02 * rho, 1.25, -1.0, d) : 0.0;
}

double gersh(const ArmState& s) {
    double g = 1.0;
    for (std::size_t i = 0; i < s.rank && i < s.crow.size(); ++i) g = std::max(g, s.crow[i]);
    return g;
}

std::vector<double> gersh_rows(const double* W, std::size_t r, std::size_t d) {
    // Replays append_row's sums: row j's entries c = W_{<j} w_j (gemv_rect, as when row j was
    // appended) and its diagonal 1 + |w_j|^2, so that a recomputation gives the same bits.
    const Kernels& K = kernels();
    std::vector<double> c(r), crow(r, 0.0);
    for (std::size_t j = 0; j < r; ++j) {
        const double* wj = W + j * d;
        if (j > 0) K.gemv_rect(W, wj, c.data(), j, d);
        double last = 0.0;
        for (std::size_t i = 0; i < j; ++i) {
            const double a = std::fabs(c[i]);
            crow[i] += a;
            last += a;
        }
        crow[j] = last + std::fabs(1.0 + K.dot(wj, wj, d));
    }
    return crow;
}

void correction_rows(ArmState& s, std::size_t d) { s.crow = gersh_rows(s.W.data(), s.rank, d); }

// Per-thread scratch, so that the hot paths do not allocate.
std::vector<double>& scratch(std::size_t n) {
    thread_local std::vector<double> buf;
    if (buf.size() < n) buf.resize(n);
    return buf;
}

void refactor(ArmState& s, std::size_t d, std::size_t T) {
    const std::size_t r = s.rank;
    const Kernels& K = kernels();
    std::vector<double> Cinv = correction_inverse(s.W, r, d);
    std::vector<double> beta(T * d), omega(r * T);
    for (std::size_t t = 0; t < T; ++t) whiten(*s.base, s.b.data() + t * d, beta.data() + t * d, d);
    for (std::size_t j = 0; j < r; ++j)
        for (std::size_t t = 0; t < T; ++t)
            omega[j * T + t] = K.dot(s.W.data() + j * d, beta.data() + t * d, d);
    s.Cinv.swap(Cinv);
    s.beta.swap(beta);
    s.omega.swap(omega);
    correction_rows(s, d);
    s.theta = theta(s, d, T);
    s.since_refactor = 0;
}

double fold(ArmState& s, std::size_t d, std::size_t T) {
    const double g = gersh(s);
    std::vector<double> A = base_matrix(*s.base, d);
    add_gram(A, s.U.data(), s.rank, d);
    // Renormalised: A = c (G + U^T U) = (c / p) (p (G + U^T U)), p a power of 4 (exact).
    const int m = renorm_exponent(s.scale);
    const double p = std::ldexp(1.0, 2 * m);
    if (m != 0) {
        for (double& a : A) a *= p;
        for (double& v : s.b) v *= p;
        s.scale /= p;
    }
    std::shared_ptr<const Base> B = dense_base(std::move(A), d, s.name);
    std::vector<double> beta(T * d);
    for (std::size_t t = 0; t < T; ++t) whiten(*B, s.b.data() + t * d, beta.data() + t * d, d);
    s.base = std::move(B);
    s.beta.swap(beta);
    s.rank = 0;
    s.U.clear(), s.W.clear(), s.Cinv.clear(), s.omega.clear(), s.crow.clear();
    s.ceil = s.ceil > 0.0 ? s.ceil * g * p : 0.0;
    s.ceil_cert *= p;      // the compounding is measured in the same units
    s.theta = theta(s, d, T);
    s.since_refactor = 0;  // a fold is an exact refactorisation
    s.fold_ticket = 0;     // a fold running unlocked on the old base is void
    s.floor = 0.0;         // the caller keeps or certifies the floor (Pool::refloor)
    return p;
}

// Appends the row u (whitened w = R u) with targets y: b += y u, beta += y w, omega and the
// bordered inverse of C = I + W W^T follow. O(r d + r^2 + T d). Returns false, with s
// untouched, when sigma cannot be computed accurately on the current base (see below).
bool append_row(ArmState& s, std::size_t d, std::size_t T, std::size_t max_rank, const double* u,
                const double* w, const double* y) {
    const std::size_t r = s.rank;
    const Kernels& K = kernels();
    if (s.W.capacity() < max_rank * d) {  // no reallocation while the rank grows
        s.U.reserve(max_rank * d), s.W.reserve(max_rank * d);
        s.Cinv.reserve(max_rank * max_rank), s.omega.reserve(max_rank * T);
    }
    thread_local std::vector<double> cg;
    if (cg.size() < 2 * r + 2 * d) cg.resize(2 * r + 2 * d);
    double *c = cg.data(), *g = c + r, *q = g + r, *h = q + d;
    if (r > 0) K.gemv_rect(s.W.data(), w, c, r, d);
    for (std::size_t i = 0; i < r; ++i) g[i] = K.dot(s.Cinv.data() + i * r, c, r);
    const double ww = K.dot(w, w, d);
    if (!std::isfinite(ww) || !(K.dot(u, u, d) <= kMaxRowNorm2))
        throw std::runtime_error("update of '" + s.name + "' is too large: its weighted squared "
                                 "norm exceeds 1e150 (rescale the embedding or the weight)");
    // sigma = 1 + w^T (I + W^T W)^{-1} w >= 1 exactly, but computed as a difference it loses
    // about ww * eps: a huge or repeated row (ww >> 1 on a stale base) cancels it to noise, even
    // below 0. The caller then folds the arm (r = 0, where sigma = 1 + ww is exact) and retries.
    const double sigma = 1.0 + ww - K.dot(c, g, r);
    if (!(sigma >= 1.0 - 1e-9) || ww > 1e5 * sigma) return false;
    // The new b and beta must stay finite (a huge target would poison every later decision).
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j)
            if (!std::isfinite(s.b[t * d + j] + y[t] * u[j]) ||
                !std::isfinite(s.beta[t * d + j] + y[t] * w[j]))
                throw std::runtime_error("update of '" + s.name + "' is too large: the "
                                         "statistics would overflow (rescale the targets)");
    // h = A^{-1} u = R^T (w - W^T g), with the rows before this one; theta's step below.
    K.gemv_t(s.W.data(), g, h, r, d);  // W^T g (h as scratch)
    for (std::size_t j = 0; j < d; ++j) q[j] = w[j] - h[j];
    unwhiten(*s.base, q, h, d);
    for (std::size_t t = 0; t < T; ++t) {
        double* th = s.theta.data() + t * d;
        const double e = (y[t] - K.dot(th, u, d)) / sigma;
        for (std::size_t j = 0; j < d; ++j) th[j] += e * h[j];
    }
    // Bordered inverse, in place: rows move from stride r to stride r + 1 (last row first, so
    // that no row is overwritten before it moves), then Cinv += g g^T / sigma and the border.
    s.Cinv.resize((r + 1) * (r + 1));
    double* C = s.Cinv.data();
    for (std::size_t i = r; i-- > 0;) std::memmove(C + i * (r + 1), C + i * r, r * sizeof(double));
    const double inv_sigma = 1.0 / sigma;
    for (std::size_t i = 0; i < r; ++i) {
        const double gi = g[i] * inv_sigma;
        double* Ci = C + i * (r + 1);
        for (std::size_t j = 0; j < r; ++j) Ci[j] += gi * g[j];
        Ci[r] = C[r * (r + 1) + i] = -gi;
    }
    C[r * (r + 1) + r] = inv_sigma;
    for (std::size_t t = 0; t < T; ++t) {
        double* bt = s.b.data() + t * d;
        double* be = s.beta.data() + t * d;
        for (std::size_t j = 0; j < d; ++j) bt[j] += y[t] * u[j], be[j] += y[t] * w[j];
    }
    for (std::size_t j = 0; j < r; ++j)
        for (std::size_t t = 0; t < T; ++t) s.omega[j * T + t] += y[t] * c[j];
    for (std::size_t t = 0; t < T; ++t) s.omega.push_back(K.dot(w, s.beta.data() + t * d, d));
    // Gershgorin row sums of C = I + W W^T, in the column order of correction_rows.
    s.crow.resize(r);
    double last = 0.0;
    for (std::size_t i = 0; i < r; ++i) {
        const double a = std::fabs(c[i]);
        s.crow[i] += a;
        last += a;
    }
    s.crow.push_back(last + std::fabs(1.0 + ww));
    s.U.insert(s.U.end(), u, u + d);
    s.W.insert(s.W.end(), w, w + d);
    s.rank = r + 1;
    return true;
}


// theta[t] = R^T (beta[t] - W^T Cinv omega[:, t]).
std::vector<double> theta(const ArmState& s, std::size_t d, std::size_t T) {
    const std::size_t r = s.rank;
    std::vector<double> theta(T * d), q(d), h(r);
    for (std::size_t t = 0; t < T; ++t) {
        for (std::size_t i = 0; i < r; ++i) {
            double acc = 0.0;
            for (std::size_t j = 0; j < r; ++j) acc += s.Cinv[i * r + j] * s.omega[j * T + t];
            h[i] = acc;
        }
        std::copy(s.beta.begin() + t * d, s.beta.begin() + (t + 1) * d, q.begin());
        for (std::size_t i = 0; i < r; ++i)
            for (std::size_t j = 0; j < d; ++j) q[j] -= h[i] * s.W[i * d + j];
        unwhiten(*s.base, q.data(), theta.data() + t * d, d);
    }
    return theta;
}

ArmView view(const ArmState& s, std::size_t d, std::size_t T) {
    const std::size_t r = s.rank;
    const Kernels& K = kernels();
    ArmView out;
    out.name = s.name;
    out.b = s.b;
    out.input_price = s.input_price, out.output_price = s.output_price, out.wait = s.wait;
    out.n_obs = s.n_obs, out.since_refactor = s.since_refactor, out.rank = r;
    out.A = base_matrix(*s.base, d);
    for (std::size_t j = 0; j < r; ++j) K.syr(out.A.data(), s.U.data() + j * d, 1.0, d);
    const double c = s.scale;  // A = c (G + U^T U), b = c b~ (pool.hpp, forgetting)
    if (c != 1.0) {
        for (double& a : out.A) a *= c;
        for (double& v : out.b) v *= c;
    }
    // Ainv = R^T R - Y^T Cinv Y with Y = W R: what the decisions use, drift included.
    out.Ainv.assign(d * d, 0.0);
    if (s.base->scalar > 0.0) {
        for (std::size_t i = 0; i < d; ++i) out.Ainv[i * d + i] = 1.0 / s.base->scalar;
    } else {
        std::vector<double> Rt(d * d, 0.0);  // row i: column i of R, non-zero from index i on
        for (std::size_t i = 0; i < d; ++i)
            for (std::size_t j = 0; j <= i; ++j) Rt[j * d + i] = s.base->R[packed_row(i) + j];
        for (std::size_t i = 0; i < d; ++i)
            for (std::size_t j = i; j < d; ++j)
                out.Ainv[i * d + j] = out.Ainv[j * d + i] =
                    K.dot(Rt.data() + i * d + j, Rt.data() + j * d + j, d - j);
    }
    std::vector<double> Y(r * d), CY(r * d, 0.0);
    for (std::size_t j = 0; j < r; ++j) unwhiten(*s.base, s.W.data() + j * d, Y.data() + j * d, d);
    for (std::size_t i = 0; i < r; ++i)
        for (std::size_t j = 0; j < r; ++j)
            for (std::size_t c = 0; c < d; ++c) CY[i * d + c] += s.Cinv[i * r + j] * Y[j * d + c];
    for (std::size_t j = 0; j < r; ++j)
        for (std::size_t a = 0; a < d; ++a) {
            const double ya = Y[j * d + a];
            for (std::size_t c = 0; c < d; ++c) out.Ainv[a * d + c] -= ya * CY[j * d + c];
        }
    if (c != 1.0)
        for (double& a : out.Ainv) a /= c;
    out.theta = theta(s, d, T);
    return out;
}

}  // namespace mixllm::arm
