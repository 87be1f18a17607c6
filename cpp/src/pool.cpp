// Pool state: per-arm online ridge regression and the MixLLM score (formula and the shared
// base + low-rank representation in pool.hpp).
#include "mixllm/pool.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

namespace mixllm {
namespace {

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

// out = R^T w for the base's factor (a transposed packed triangular product; not on the hot path).
void rt_mv(const Base& B, const double* w, double* out, std::size_t d) {
    if (B.scalar > 0.0) {
        const double c = 1.0 / std::sqrt(B.scalar);
        for (std::size_t i = 0; i < d; ++i) out[i] = c * w[i];
        return;
    }
    std::fill(out, out + d, 0.0);
    for (std::size_t i = 0; i < d; ++i) {
        const double wi = w[i];
        const double* Ri = B.R.data() + packed_row(i);
        for (std::size_t j = 0; j <= i; ++j) out[j] += Ri[j] * wi;
    }
}

std::vector<double> base_matrix(const Base& B, std::size_t d) {
    if (B.scalar <= 0.0) return B.A;
    std::vector<double> A(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i) A[i * d + i] = B.scalar;
    return A;
}

std::shared_ptr<const Base> dense_base(std::vector<double> A, std::size_t d, const std::string& who) {
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

// A += U^T U for r rows U (r x d): one pass over A with dots of length r (the rows of U^T),
// instead of r rank-1 passes over the whole of A.
void add_gram(std::vector<double>& A, const double* U, std::size_t r, std::size_t d) {
    if (r == 0) return;
    const Kernels& K = kernels();
    std::vector<double> Ut(d * r);
    for (std::size_t i = 0; i < r; ++i)
        for (std::size_t j = 0; j < d; ++j) Ut[j * r + i] = U[i * d + j];
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j <= i; ++j) {
            const double v = K.dot(Ut.data() + i * r, Ut.data() + j * r, r);
            A[i * d + j] += v;
            if (j != i) A[j * d + i] += v;
        }
}

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

// Per-thread scratch, so that the hot paths do not allocate.
std::vector<double>& scratch(std::size_t n) {
    thread_local std::vector<double> buf;
    if (buf.size() < n) buf.resize(n);
    return buf;
}

}  // namespace

Pool::Pool(std::size_t dim, std::size_t n_targets, std::size_t refactor_every, std::size_t max_rank)
    : dim_(dim), n_targets_(n_targets), refactor_every_(refactor_every),
      max_rank_(max_rank ? max_rank : std::clamp<std::size_t>(dim / 4, 4, 128)) {
    if (dim == 0) throw std::invalid_argument("dim must be positive");
    if (n_targets < 2) throw std::invalid_argument("n_targets must be >= 2 (quality, log tokens)");
    if (refactor_every == 0) throw std::invalid_argument("refactor_every must be positive");
}

std::size_t Pool::size() const {
    std::shared_lock lock(mu_);
    return arms_.size();
}

std::vector<std::string> Pool::names() const {
    std::shared_lock lock(mu_);
    std::vector<std::string> out;
    out.reserve(arms_.size());
    for (const auto& a : arms_) out.push_back(a->name);
    return out;
}

std::uint64_t Pool::version() const {
    std::shared_lock lock(mu_);
    return version_;
}

std::vector<std::uint64_t> Pool::n_obs() const {
    std::shared_lock lock(mu_);
    std::vector<std::uint64_t> out;
    for (const auto& a : arms_) out.push_back(a->n_obs);
    return out;
}

std::size_t Pool::index_of(const std::string& name) const {
    for (std::size_t k = 0; k < arms_.size(); ++k)
        if (arms_[k]->name == name) return k;
    throw std::out_of_range("unknown LLM: '" + name + "'");
}

void Pool::push(std::unique_ptr<ArmState> s) {
    std::unique_lock lock(mu_);
    for (const auto& a : arms_)
        if (a->name == s->name) throw std::invalid_argument("LLM already in the pool: '" + s->name + "'");
    arms_.push_back(std::move(s));
    version_ = next_version();
}

std::shared_ptr<const Base> Pool::scalar_base(double ridge) {
    for (const auto& a : arms_)
        if (a->base->scalar == ridge) return a->base;
    auto B = std::make_shared<Base>();
    B->scalar = ridge;
    B->id = next_base_id();
    return B;
}

void Pool::whiten(const Base& B, const double* x, double* v) const {
    if (B.scalar > 0.0) {
        const double c = 1.0 / std::sqrt(B.scalar);
        for (std::size_t i = 0; i < dim_; ++i) v[i] = c * x[i];
    } else {
        kernels().panel_mv(B.P.data(), x, v, dim_);
    }
}

bool Pool::cache_get(std::uint64_t base_id, const double* x, double* v) const {
    std::lock_guard lock(cache_mu_);
    for (const auto& e : cache_)
        if (e.base_id == base_id && std::memcmp(e.x.data(), x, dim_ * sizeof(double)) == 0) {
            std::copy(e.v.begin(), e.v.end(), v);
            return true;
        }
    return false;
}

void Pool::cache_put(std::uint64_t base_id, const double* x, const double* v) const {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() < kCacheSize) cache_.resize(kCacheSize);
    CacheEntry& e = cache_[cache_next_];
    cache_next_ = (cache_next_ + 1) % kCacheSize;
    e.base_id = base_id;
    e.x.assign(x, x + dim_);
    e.v.assign(v, v + dim_);
}

void Pool::add_arm(const std::string& name, double ridge, const double* theta0, double input_price,
                   double output_price) {
    if (!(ridge > 0.0) || !std::isfinite(ridge)) throw std::invalid_argument("ridge must be > 0");
    const std::size_t d = dim_, T = n_targets_;
    auto s = std::make_unique<ArmState>();
    s->name = name;
    s->b.assign(T * d, 0.0);
    if (theta0 != nullptr)
        for (std::size_t i = 0; i < T * d; ++i) s->b[i] = ridge * theta0[i];
    s->input_price = input_price;
    s->output_price = output_price;
    std::unique_lock lock(mu_);
    for (const auto& a : arms_)
        if (a->name == name) throw std::invalid_argument("LLM already in the pool: '" + name + "'");
    s->base = scalar_base(ridge);
    s->beta.resize(T * d);
    for (std::size_t t = 0; t < T; ++t) whiten(*s->base, s->b.data() + t * d, s->beta.data() + t * d);
    arms_.push_back(std::move(s));
    version_ = next_version();
}

void Pool::add_arm_state(const std::string& name, const double* A, const double* b,
                         std::uint64_t n_obs, std::uint64_t since_refactor, double input_price,
                         double output_price) {
    const std::size_t d = dim_, T = n_targets_;
    auto s = std::make_unique<ArmState>();
    s->name = name;
    s->base = dense_base(std::vector<double>(A, A + d * d), d, name);
    s->b.assign(b, b + T * d);
    s->beta.resize(T * d);
    for (std::size_t t = 0; t < T; ++t) whiten(*s->base, s->b.data() + t * d, s->beta.data() + t * d);
    s->input_price = input_price;
    s->output_price = output_price;
    s->n_obs = n_obs;
    s->since_refactor = since_refactor;
    push(std::move(s));
}

void Pool::fit(const std::vector<std::string>& names, const std::vector<double>& input_prices,
               const std::vector<double>& output_prices, double ridge, const double* Z,
               std::size_t n, const double* Y) {
    if (!(ridge > 0.0) || !std::isfinite(ridge)) throw std::invalid_argument("ridge must be > 0");
    const std::size_t d = dim_, T = n_targets_, K = names.size();
    if (input_prices.size() != K || output_prices.size() != K)
        throw std::invalid_argument("one input and one output price per LLM");
    {
        std::shared_lock lock(mu_);
        if (!arms_.empty()) throw std::invalid_argument("fit needs an empty pool");
    }
    const Kernels& Kn = kernels();
    std::vector<char> seen(n * K, 0), common(n, 1);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = 0; k < K; ++k) {
            bool ok = true;
            for (std::size_t t = 0; t < T; ++t) ok = ok && std::isfinite(Y[(i * K + k) * T + t]);
            seen[i * K + k] = ok;
            if (!ok) common[i] = 0;
        }
    std::size_t n_common = 0;
    std::vector<double> G(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i) G[i * d + i] = ridge;
    for (std::size_t i = 0; i < n; ++i)
        if (common[i]) Kn.syr(G.data(), Z + i * d, 1.0, d), ++n_common;
    std::shared_ptr<const Base> shared;
    if (n_common == 0 || K == 0) {
        auto B = std::make_shared<Base>();
        B->scalar = ridge;
        B->id = next_base_id();
        shared = B;
    } else {
        shared = dense_base(G, d, "the shared base");
    }
    std::vector<std::unique_ptr<ArmState>> arms;
    for (std::size_t k = 0; k < K; ++k) {
        auto s = std::make_unique<ArmState>();
        s->name = names[k];
        s->input_price = input_prices[k];
        s->output_price = output_prices[k];
        s->b.assign(T * d, 0.0);
        std::vector<std::size_t> extra;
        for (std::size_t i = 0; i < n; ++i) {
            if (!seen[i * K + k]) continue;
            ++s->n_obs;
            const double* z = Z + i * d;
            for (std::size_t t = 0; t < T; ++t) {
                const double y = Y[(i * K + k) * T + t];
                double* bt = s->b.data() + t * d;
                for (std::size_t j = 0; j < d; ++j) bt[j] += y * z[j];
            }
            if (!common[i]) extra.push_back(i);
        }
        if (extra.size() < max_rank_) {
            s->base = shared;
            s->rank = extra.size();
            s->U.resize(s->rank * d);
            s->W.resize(s->rank * d);
            for (std::size_t r = 0; r < s->rank; ++r) {
                std::copy(Z + extra[r] * d, Z + (extra[r] + 1) * d, s->U.data() + r * d);
                whiten(*shared, Z + extra[r] * d, s->W.data() + r * d);
            }
        } else {
            std::vector<double> A = G;
            for (std::size_t i : extra) Kn.syr(A.data(), Z + i * d, 1.0, d);
            s->base = dense_base(std::move(A), d, names[k]);
        }
        s->beta.resize(T * d);
        refactor_locked(*s);  // Cinv, beta, omega exactly; not shared yet
        arms.push_back(std::move(s));
    }
    std::unique_lock lock(mu_);
    if (!arms_.empty()) throw std::invalid_argument("fit needs an empty pool");
    for (std::size_t k = 0; k < K; ++k)
        for (std::size_t j = 0; j < k; ++j)
            if (names[j] == names[k])
                throw std::invalid_argument("LLM already in the pool: '" + names[k] + "'");
    arms_ = std::move(arms);
    version_ = next_version();
}

void Pool::remove_arm(const std::string& name) {
    std::unique_lock lock(mu_);
    arms_.erase(arms_.begin() + static_cast<std::ptrdiff_t>(index_of(name)));
    version_ = next_version();
}

void Pool::set_prices(const std::string& name, double input_price, double output_price) {
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    s.input_price = input_price;
    s.output_price = output_price;
}

void Pool::set_wait(const std::string& name, double seconds) {
    std::unique_lock lock(mu_);
    arms_[index_of(name)]->wait = seconds;
}

void Pool::refactor_locked(ArmState& s) const {
    const std::size_t d = dim_, T = n_targets_, r = s.rank;
    const Kernels& K = kernels();
    std::vector<double> Cinv = correction_inverse(s.W, r, d);
    std::vector<double> beta(T * d), omega(r * T);
    for (std::size_t t = 0; t < T; ++t) whiten(*s.base, s.b.data() + t * d, beta.data() + t * d);
    for (std::size_t j = 0; j < r; ++j)
        for (std::size_t t = 0; t < T; ++t)
            omega[j * T + t] = K.dot(s.W.data() + j * d, beta.data() + t * d, d);
    s.Cinv.swap(Cinv);
    s.beta.swap(beta);
    s.omega.swap(omega);
    s.since_refactor = 0;
}

void Pool::fold_locked(ArmState& s) const {
    const std::size_t d = dim_, T = n_targets_;
    std::vector<double> A = base_matrix(*s.base, d);
    add_gram(A, s.U.data(), s.rank, d);
    std::shared_ptr<const Base> B = dense_base(std::move(A), d, s.name);
    std::vector<double> beta(T * d);
    for (std::size_t t = 0; t < T; ++t) whiten(*B, s.b.data() + t * d, beta.data() + t * d);
    s.base = std::move(B);
    s.beta.swap(beta);
    s.rank = 0;
    s.U.clear(), s.W.clear(), s.Cinv.clear(), s.omega.clear();
    s.since_refactor = 0;  // a fold is an exact refactorisation
    s.fold_ticket = 0;     // a fold running unlocked on the old base is void
}

namespace {
std::uint64_t next_fold_ticket() {
    static std::atomic<std::uint64_t> n{1};
    return n.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// The row u (targets ys, both weighted) would take the arm to max_rank: fold it, with the row,
// into a base of its own, the O(d^3) factorisation with the lock released, so that decisions
// and other updates go on meanwhile (rows that arrive stay corrections, on the new base). The
// row goes in with the fold or not at all: a failure leaves the arm as it was, as a fold under
// the lock did. Called with the lock held; returns with it released. Returns false when the
// arm was replaced or folded meanwhile (the caller then applies the row under the lock).
bool Pool::fold_unlocked(std::unique_lock<std::shared_mutex>& lock, const std::string& name,
                         const double* u, const double* ys) {
    const std::size_t d = dim_, T = n_targets_;
    const Kernels& K = kernels();
    const std::uint64_t ticket = next_fold_ticket();
    std::shared_ptr<const Base> old;
    std::vector<double> rows;  // the arm's r0 rows, then u
    std::size_t r0 = 0;
    {
        ArmState& s = *arms_[index_of(name)];
        if (!std::isfinite(K.dot(u, u, d)))
            throw std::runtime_error("update of '" + s.name + "' is too large: its squared norm "
                                     "overflows (rescale the embedding or the weight)");
        s.fold_ticket = ticket;
        old = s.base;
        r0 = s.rank;
        rows.reserve((r0 + 1) * d);
        rows.assign(s.U.begin(), s.U.begin() + static_cast<std::ptrdiff_t>(r0 * d));
        rows.insert(rows.end(), u, u + d);
    }
    lock.unlock();
    std::shared_ptr<const Base> B;
    std::exception_ptr failed;
    try {
        std::vector<double> A = base_matrix(*old, d);
        add_gram(A, rows.data(), r0 + 1, d);
        B = dense_base(std::move(A), d, name);
    } catch (...) {
        failed = std::current_exception();
    }
    lock.lock();
    ArmState* sp = nullptr;
    for (auto& a : arms_)
        if (a->name == name && a->fold_ticket == ticket) sp = a.get();
    if (sp == nullptr) {  // removed, replaced, or folded under the lock meanwhile
        lock.unlock();
        return false;
    }
    ArmState& s = *sp;
    s.fold_ticket = 0;
    if (failed) {
        lock.unlock();
        std::rethrow_exception(failed);
    }
    // On a copy: rows r0.. arrived during the fold and stay corrections, whitened by the new
    // base; b takes this row; beta = R b, C^-1 and omega exactly (refactor_locked).
    ArmState next = s;
    next.base = B;
    next.rank = s.rank - r0;
    next.U.assign(s.U.begin() + static_cast<std::ptrdiff_t>(r0 * d), s.U.end());
    next.W.assign(next.rank * d, 0.0);
    for (std::size_t i = 0; i < next.rank; ++i)
        whiten(*B, next.U.data() + i * d, next.W.data() + i * d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) next.b[t * d + j] += ys[t] * u[j];
    refactor_locked(next);
    for (std::size_t i = 0; i < T * d; ++i)
        if (!std::isfinite(next.b[i]) || !std::isfinite(next.beta[i])) {
            lock.unlock();
            throw std::runtime_error("update of '" + name + "' is too large: the statistics "
                                     "would overflow (rescale the targets)");
        }
    ++next.n_obs;
    s = std::move(next);
    lock.unlock();
    return true;
}

void Pool::refactor(const std::string& name) {
    std::unique_lock lock(mu_);
    refactor_locked(*arms_[index_of(name)]);
}

void Pool::refactor_all() {
    std::unique_lock lock(mu_);
    for (auto& s : arms_) refactor_locked(*s);
}

// Appends the row u (whitened w = R u) with targets y: b += y u, beta += y w, omega and the
// bordered inverse of C = I + W W^T follow. O(r d + r^2 + T d). Returns false, with s
// untouched, when sigma cannot be computed accurately on the current base (see below).
bool Pool::append_row(ArmState& s, const double* u, const double* w, const double* y) const {
    const std::size_t d = dim_, T = n_targets_, r = s.rank;
    const Kernels& K = kernels();
    if (s.W.capacity() < max_rank_ * d) {  // no reallocation while the rank grows
        s.U.reserve(max_rank_ * d), s.W.reserve(max_rank_ * d);
        s.Cinv.reserve(max_rank_ * max_rank_), s.omega.reserve(max_rank_ * T);
    }
    thread_local std::vector<double> cg;
    if (cg.size() < 2 * r) cg.resize(2 * r);
    double *c = cg.data(), *g = c + r;
    if (r > 0) K.gemv_rect(s.W.data(), w, c, r, d);
    for (std::size_t i = 0; i < r; ++i) g[i] = K.dot(s.Cinv.data() + i * r, c, r);
    const double ww = K.dot(w, w, d);
    if (!std::isfinite(ww) || !std::isfinite(K.dot(u, u, d)))
        throw std::runtime_error("update of '" + s.name + "' is too large: its squared norm "
                                 "overflows (rescale the embedding or the weight)");
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
    s.U.insert(s.U.end(), u, u + d);
    s.W.insert(s.W.end(), w, w + d);
    s.rank = r + 1;
    return true;
}

void Pool::update(const std::string& name, const double* x, const double* y, double weight) {
    update_impl(name, x, y, weight, true);
}

void Pool::update_impl(const std::string& name, const double* x, const double* y, double weight,
                       bool fold_unlocked_ok) {
    if (!(weight > 0.0) || !std::isfinite(weight))
        throw std::invalid_argument("weight must be finite and > 0");
    const std::size_t d = dim_, T = n_targets_;
    std::vector<double>& buf = scratch(3 * d + T);
    double *v = buf.data(), *u = v + d, *w = u + d, *ys = w + d;
    const double sw = std::sqrt(weight);
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    if (!cache_get(s.base->id, x, v)) {
        whiten(*s.base, x, v);
        cache_put(s.base->id, x, v);  // repeated feedback on one query (several LLMs, thumbs)
    }
    for (std::size_t j = 0; j < d; ++j) u[j] = sw * x[j], w[j] = sw * v[j];
    for (std::size_t t = 0; t < T; ++t) ys[t] = sw * y[t];
    if (fold_unlocked_ok && s.rank + 1 >= max_rank_ && s.fold_ticket == 0) {
        if (fold_unlocked(lock, name, u, ys)) return;
        update_impl(name, x, y, weight, false);  // the arm changed meanwhile: apply the row here
        return;
    }
    auto step = [&](ArmState& a) {
        if (!append_row(a, u, w, ys)) {
            // Rare: fold a copy into a fresh base, on which the row is well conditioned.
            ArmState next = a;
            fold_locked(next);
            whiten(*next.base, x, v);
            for (std::size_t j = 0; j < d; ++j) w[j] = sw * v[j];
            if (!append_row(next, u, w, ys))
                throw std::runtime_error("update of '" + a.name + "' is not numerically valid");
            a = std::move(next);
        }
        ++a.n_obs;
        if (++a.since_refactor >= refactor_every_) refactor_locked(a);
        if (a.rank >= rank_cap()) fold_locked(a);  // the unlocked fold did not keep up
    };
    // append_row throws only before it changes anything, but a refactorisation or a fold can
    // fail after the row went in (a factorisation that is not numerically positive definite):
    // those steps run on a copy, so that a failed update leaves the arm exactly as it was.
    // They come once per refactor_every or max_rank updates, which pays for the copy.
    if (s.since_refactor + 1 >= refactor_every_ || s.rank + 1 >= rank_cap()) {
        ArmState next = s;
        step(next);
        s = std::move(next);
    } else {
        step(s);
    }
}

void Pool::update_batch(const std::string& name, const double* X, const double* Y, std::size_t n) {
    const std::size_t d = dim_, T = n_targets_;
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    // Work on a copy so that a failure leaves the arm as it was.
    ArmState next = s;
    std::vector<double> w(d);
    if (next.rank + n < rank_cap()) {
        for (std::size_t r = 0; r < n; ++r) {
            whiten(*next.base, X + r * d, w.data());
            if (!append_row(next, X + r * d, w.data(), Y + r * T)) {
                fold_locked(next);
                whiten(*next.base, X + r * d, w.data());
                if (!append_row(next, X + r * d, w.data(), Y + r * T))
                    throw std::runtime_error("update of '" + name + "' is not numerically valid");
            }
        }
    } else {
        // Fold the existing rows and the batch into a base of its own in one factorisation.
        std::vector<double> A = base_matrix(*next.base, d);
        add_gram(A, next.U.data(), next.rank, d);
        add_gram(A, X, n, d);
        for (std::size_t r = 0; r < n; ++r) {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t j = 0; j < d; ++j) next.b[t * d + j] += Y[r * T + t] * X[r * d + j];
        }
        next.base = dense_base(std::move(A), d, next.name);
        next.rank = 0;
        next.U.clear(), next.W.clear(), next.Cinv.clear(), next.omega.clear();
        next.fold_ticket = 0;
    }
    next.n_obs += n;
    refactor_locked(next);
    s = std::move(next);
}

// Calls per_arm_row(k, row, means (T), quad) for every arm and query; caller holds the lock.
template <typename F>
void Pool::evaluate(const double* X, std::size_t B, F&& per_arm_row) const {
    const std::size_t d = dim_, T = n_targets_, n_arms = arms_.size();
    const Kernels& K = kernels();
    const bool f32 = float32();
    constexpr std::size_t kChunk = 64;  // queries per pass: their whitened copies stay in L2
    // Per-thread lists (no allocation per call once grown; per_arm_row never re-enters).
    thread_local std::vector<const Base*> bases;
    thread_local std::vector<std::size_t> arm_base;
    bases.clear();
    arm_base.resize(n_arms);
    for (std::size_t k = 0; k < n_arms; ++k) {
        const Base* b = arms_[k]->base.get();
        std::size_t i = 0;
        while (i < bases.size() && bases[i] != b) ++i;
        if (i == bases.size()) bases.push_back(b);
        arm_base[k] = i;
    }
    const std::size_t nb_max = std::min(B, kChunk), nbases = bases.size();
    const std::size_t V_size = nbases * nb_max * d, vv_size = nbases * nb_max;
    std::vector<double>& buf = scratch(V_size + vv_size + 2 * rank_cap() + T);
    double* Vall = buf.data();
    double* vvall = Vall + V_size;
    double* p = vvall + vv_size;
    double* g = p + rank_cap();
    double* means = g + rank_cap();
    for (std::size_t r0 = 0; r0 < B; r0 += kChunk) {
        const std::size_t nb = std::min(kChunk, B - r0);
        const double* Xc = X + r0 * d;
        for (std::size_t bi = 0; bi < nbases; ++bi) {
            double* V = Vall + bi * nb_max * d;
            const Base& Bs = *bases[bi];
            if (Bs.scalar > 0.0) {
                const double c = 1.0 / std::sqrt(Bs.scalar);
                for (std::size_t i = 0; i < nb * d; ++i) V[i] = c * Xc[i];
            } else if (f32) {
                K.panel_mm_f32(Bs.P32.data(), Xc, nb, d, V);
            } else {
                K.panel_mm(Bs.P.data(), Xc, nb, d, V);
            }
            for (std::size_t r = 0; r < nb; ++r)
                vvall[bi * nb_max + r] = K.dot(V + r * d, V + r * d, d);
            // The update after a decision reuses R x from the cache: only a float64 one, so
            // that the float32 whitening never enters the state (the update recomputes it).
            if (B == 1 && (!f32 || Bs.scalar > 0.0)) cache_put(Bs.id, Xc, V);
        }
        for (std::size_t k = 0; k < n_arms; ++k) {
            const ArmState& s = *arms_[k];
            const std::size_t bi = arm_base[k], rk = s.rank;
            for (std::size_t r = 0; r < nb; ++r) {
                const double* v = Vall + (bi * nb_max + r) * d;
                double quad = vvall[bi * nb_max + r];
                K.gemv_rect(s.beta.data(), v, means, T, d);
                if (rk > 0) {
                    K.gemv_rect(s.W.data(), v, p, rk, d);
                    for (std::size_t i = 0; i < rk; ++i) g[i] = K.dot(s.Cinv.data() + i * rk, p, rk);
                    quad -= K.dot(p, g, rk);
                    for (std::size_t j = 0; j < rk; ++j)
                        for (std::size_t t = 0; t < T; ++t) means[t] -= s.omega[j * T + t] * g[j];
                }
                per_arm_row(k, r0 + r, static_cast<const double*>(means), quad);
            }
        }
    }
}

PredictResult Pool::predict(const double* X, std::size_t B) const {
    const std::size_t T = n_targets_;
    std::shared_lock lock(mu_);
    const std::size_t n_arms = arms_.size();
    PredictResult out;
    out.means.resize(B * n_arms * T);
    out.bonus.resize(B * n_arms);
    for (const auto& a : arms_) out.names.push_back(a->name);
    evaluate(X, B, [&](std::size_t k, std::size_t r, const double* means, double quad) {
        std::copy(means, means + T, out.means.data() + (r * n_arms + k) * T);
        out.bonus[r * n_arms + k] = std::sqrt(std::max(quad, 0.0));
    });
    return out;
}

ScoreResult Pool::score(const double* X, std::size_t B, const double* in_tokens,
                        const ScoreParams& p, bool with_terms, std::uint64_t known_version) const {
    ScoreResult out;
    score_into(out, X, B, in_tokens, p, with_terms, known_version);
    return out;
}

void Pool::score_into(ScoreResult& out, const double* X, std::size_t B, const double* in_tokens,
                      const ScoreParams& p, bool with_terms, std::uint64_t known_version) const {
    std::shared_lock lock(mu_);
    const std::size_t n_arms = arms_.size();
    if (n_arms == 0) throw std::invalid_argument("the pool is empty");
    out.version = version_;
    out.choice.assign(B, -1);
    out.terms.clear();
    if (with_terms) out.terms.resize(B * n_arms * kNumTerms);
    out.names.clear();
    if (version_ != known_version && known_version != kSkipNames)
        for (const auto& a : arms_) out.names.push_back(a->name);
    const bool use_pen = p.tau > 0.0 && std::isfinite(p.tau);
    thread_local std::vector<double> pen_best;  // pen (n_arms), then best (B)
    pen_best.assign(n_arms + B, 0.0);
    double* pen = pen_best.data();
    double* best = pen + n_arms;
    if (use_pen)
        for (std::size_t k = 0; k < n_arms; ++k) pen[k] = std::expm1(std::max(arms_[k]->wait, 0.0) / p.tau);
    std::fill(best, best + B, -std::numeric_limits<double>::infinity());
    evaluate(X, B, [&](std::size_t k, std::size_t r, const double* means, double quad) {
        const ArmState& s = *arms_[k];
        const double q = means[kQuality];
        const double out_tok = std::expm1(std::clamp(means[kLogTokens], 0.0, kMaxLogTokens));
        const double cost = (in_tokens[r] * s.input_price + out_tok * s.output_price) * 1e-6;
        const double bon = std::sqrt(std::max(quad, 0.0));
        // lam = inf ignores the cost even when it overflows (inf * 0 would be NaN).
        const double sc = q - (p.inv_lam != 0.0 ? cost * p.inv_lam : 0.0) + p.alpha * bon -
                          (p.beta != 0.0 ? p.beta * pen[k] : 0.0);
        // Arms are visited in order for each query, so ">" keeps the first of equal scores.
        if (sc > best[r]) {
            best[r] = sc;
            out.choice[r] = static_cast<std::int64_t>(k);
        }
        if (with_terms) {
            double* t = out.terms.data() + (r * n_arms + k) * kNumTerms;
            t[0] = q, t[1] = out_tok, t[2] = cost, t[3] = bon, t[4] = pen[k], t[5] = sc;
        }
    });
    // A NaN score never wins a comparison; arm 0 keeps every decision valid.
    for (auto& c : out.choice)
        if (c < 0) c = 0;
}

namespace {

// theta[t] = R^T (beta[t] - W^T Cinv omega[:, t]).
std::vector<double> theta_of(const ArmState& s, std::size_t d, std::size_t T) {
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
        rt_mv(*s.base, q.data(), theta.data() + t * d, d);
    }
    return theta;
}

}  // namespace

std::vector<double> Pool::theta(const std::string& name) const {
    std::shared_lock lock(mu_);
    return theta_of(*arms_[index_of(name)], dim_, n_targets_);
}

ArmView Pool::arm(const std::string& name) const {
    ArmState s;
    {
        std::shared_lock lock(mu_);
        s = *arms_[index_of(name)];
    }
    const std::size_t d = dim_, T = n_targets_, r = s.rank;
    const Kernels& K = kernels();
    ArmView out;
    out.name = s.name;
    out.b = s.b;
    out.input_price = s.input_price, out.output_price = s.output_price, out.wait = s.wait;
    out.n_obs = s.n_obs, out.since_refactor = s.since_refactor, out.rank = r;
    out.A = base_matrix(*s.base, d);
    for (std::size_t j = 0; j < r; ++j) K.syr(out.A.data(), s.U.data() + j * d, 1.0, d);
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
    for (std::size_t j = 0; j < r; ++j) rt_mv(*s.base, s.W.data() + j * d, Y.data() + j * d, d);
    for (std::size_t i = 0; i < r; ++i)
        for (std::size_t j = 0; j < r; ++j)
            for (std::size_t c = 0; c < d; ++c) CY[i * d + c] += s.Cinv[i * r + j] * Y[j * d + c];
    for (std::size_t j = 0; j < r; ++j)
        for (std::size_t a = 0; a < d; ++a) {
            const double ya = Y[j * d + a];
            for (std::size_t c = 0; c < d; ++c) out.Ainv[a * d + c] -= ya * CY[j * d + c];
        }
    out.theta = theta_of(s, d, T);
    return out;
}

std::unique_ptr<Pool> Pool::clone() const {
    auto p = std::make_unique<Pool>(dim_, n_targets_, refactor_every_, max_rank_);
    p->set_float32(float32());
    std::shared_lock lock(mu_);
    for (const auto& a : arms_) {
        p->arms_.push_back(std::make_unique<ArmState>(*a));
        p->arms_.back()->fold_ticket = 0;  // the original's fold does not install in the copy
    }
    p->version_ = version_;
    return p;
}

Snapshot Pool::snapshot() const {
    std::shared_lock lock(mu_);
    Snapshot out;
    std::vector<const Base*> seen;
    for (const auto& a : arms_) {
        std::size_t i = 0;
        while (i < seen.size() && seen[i] != a->base.get()) ++i;
        if (i == seen.size()) {
            seen.push_back(a->base.get());
            out.bases.push_back(*a->base);
        }
        out.arm_base.push_back(i);
        out.arms.push_back(*a);
        out.arms.back().base.reset();
        out.arms.back().fold_ticket = 0;
    }
    return out;
}

std::unique_ptr<Pool> Pool::from_snapshot(std::size_t dim, std::size_t n_targets,
                                          std::size_t refactor_every, std::size_t max_rank,
                                          Snapshot s) {
    auto p = std::make_unique<Pool>(dim, n_targets, refactor_every, max_rank);
    const std::size_t d = dim, T = n_targets;
    auto bad = [](const std::string& what) { throw std::invalid_argument("snapshot: " + what); };
    std::vector<std::shared_ptr<const Base>> bases;
    for (Base& b : s.bases) {
        if (b.scalar > 0.0) {
            if (!b.A.empty() || !b.R.empty()) bad("a scalar base holds matrices");
        } else if (b.A.size() != d * d || b.R.size() != packed_row(d)) {
            bad("base matrices of the wrong size");
        }
        b.id = next_base_id();
        b.P.assign(b.scalar > 0.0 ? 0 : panel_size(d), 0.0);
        b.P32.assign(b.P.size(), 0.0f);
        if (b.scalar <= 0.0) {
            pack_panels(b.R.data(), b.P.data(), d);
            panels_to_f32(b.P.data(), b.P32.data(), d);
        }
        bases.push_back(std::make_shared<const Base>(std::move(b)));
    }
    if (s.arm_base.size() != s.arms.size()) bad("one base index per arm");
    for (std::size_t k = 0; k < s.arms.size(); ++k) {
        ArmState& a = s.arms[k];
        const std::size_t r = a.rank;
        if (s.arm_base[k] >= bases.size()) bad("base index out of range");
        if (r > p->rank_cap() || a.U.size() != r * d || a.W.size() != r * d ||
            a.Cinv.size() != r * r || a.b.size() != T * d || a.beta.size() != T * d ||
            a.omega.size() != r * T)
            bad("arrays of '" + a.name + "' have the wrong size");
        for (const auto& other : p->arms_)
            if (other->name == a.name) bad("duplicate LLM '" + a.name + "'");
        a.base = bases[s.arm_base[k]];
        a.fold_ticket = 0;
        p->arms_.push_back(std::make_unique<ArmState>(std::move(a)));
    }
    p->version_ = next_version();
    return p;
}

}  // namespace mixllm
