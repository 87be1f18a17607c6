// Pool membership, its lock, and updates: arms added, removed and repriced by name; one
// observation (or a batch) applied to an arm under the exclusive lock, its fold into a base of
// its own with the lock released (pool.hpp). One arm's algebra is in arm.cpp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mixllm/arm.hpp"
#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"
#include "mixllm/model.hpp"

namespace mixllm {

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

void Pool::certify(ArmState& s) const {
    s.floor = reference_ ? arm::certify_floor(*s.base, *reference_, dim_) : 0.0;
    s.floor_ref = reference_ ? reference_->id : 0;
    s.floor_n = s.n_obs;
}

void Pool::refloor(ArmState& s, double old_floor) const {
    s.floor = old_floor;
    if (floor_due(s)) certify(s);
    receil(s);
}

void Pool::receil(ArmState& s) const {
    if (!reference_) {
        s.ceil = s.ceil_cert = 0.0;
        return;
    }
    if (ceil_due(s)) {
        s.ceil = s.ceil_cert = arm::certify_ceiling(*s.base, *reference_, dim_);
        s.ceil_ref = reference_->id;
    }
}

std::shared_ptr<const Base> Pool::scalar_base(double ridge) {
    for (const auto& a : arms_)
        if (a->base->scalar == ridge) return a->base;
    return arm::scalar_base(ridge);
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
    arm::refactor(*s, d, T);  // beta and theta
    if (!reference_) reference_ = s->base;
    certify(*s);
    arms_.push_back(std::move(s));
    version_ = arm::next_version();
}

void Pool::add_arm_state(const std::string& name, const double* A, const double* b,
                         std::uint64_t n_obs, std::uint64_t since_refactor, double input_price,
                         double output_price) {
    const std::size_t d = dim_, T = n_targets_;
    auto s = std::make_unique<ArmState>();
    s->name = name;
    s->base = arm::dense_base(std::vector<double>(A, A + d * d), d, name);
    s->b.assign(b, b + T * d);
    arm::refactor(*s, d, T);  // beta and theta
    s->input_price = input_price;
    s->output_price = output_price;
    s->n_obs = n_obs;
    s->since_refactor = since_refactor;
    std::shared_ptr<const Base> ref;
    {
        std::shared_lock lock(mu_);
        ref = reference_ ? reference_ : s->base;
    }
    s->floor = arm::certify_floor(*s->base, *ref, d);  // O(d^3): outside the lock
    s->floor_ref = ref->id;
    s->floor_n = s->n_obs;
    s->ceil = s->ceil_cert = arm::certify_ceiling(*s->base, *ref, d);
    s->ceil_ref = ref->id;
    std::unique_lock lock(mu_);
    for (const auto& a : arms_)
        if (a->name == s->name) throw std::invalid_argument("LLM already in the pool: '" + s->name + "'");
    if (!reference_) reference_ = s->base;
    if (s->floor_ref != reference_->id) certify(*s);
    receil(*s);
    arms_.push_back(std::move(s));
    version_ = arm::next_version();
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
        shared = arm::scalar_base(ridge);
    } else {
        shared = arm::dense_base(G, d, "the shared base");
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
                arm::whiten(*shared, Z + extra[r] * d, s->W.data() + r * d, d);
            }
        } else {
            std::vector<double> A = G;
            for (std::size_t i : extra) Kn.syr(A.data(), Z + i * d, 1.0, d);
            s->base = arm::dense_base(std::move(A), d, names[k]);
        }
        s->beta.resize(T * d);
        arm::refactor(*s, dim_, n_targets_);  // Cinv, beta, omega, theta exactly; not shared yet
        s->floor = arm::certify_floor(*s->base, *shared, d);
        s->floor_ref = shared->id;
        s->floor_n = s->n_obs;
        s->ceil = s->ceil_cert = arm::certify_ceiling(*s->base, *shared, d);
        s->ceil_ref = shared->id;
        arms.push_back(std::move(s));
    }
    std::unique_lock lock(mu_);
    if (!arms_.empty()) throw std::invalid_argument("fit needs an empty pool");
    for (std::size_t k = 0; k < K; ++k)
        for (std::size_t j = 0; j < k; ++j)
            if (names[j] == names[k])
                throw std::invalid_argument("LLM already in the pool: '" + names[k] + "'");
    arms_ = std::move(arms);
    reference_ = shared;
    version_ = arm::next_version();
}

void Pool::remove_arm(const std::string& name) {
    std::unique_lock lock(mu_);
    arms_.erase(arms_.begin() + static_cast<std::ptrdiff_t>(index_of(name)));
    version_ = arm::next_version();
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
                         const double* u, const double* wu, const double* ys) {
    const std::size_t d = dim_, T = n_targets_;
    const Kernels& K = kernels();
    const std::uint64_t ticket = next_fold_ticket();
    std::shared_ptr<const Base> old, ref = reference_;
    bool due = true;
    double old_floor = 0.0, old_ceil = 0.0, old_cert = 0.0;
    std::vector<double> rows;  // the arm's r0 rows, then u
    std::vector<double> wrows, crow;  // the r0 rows whitened by the old base; their row sums
    std::size_t r0 = 0;
    {
        ArmState& s = *arms_[index_of(name)];
        if (!std::isfinite(K.dot(u, u, d)))
            throw std::runtime_error("update of '" + s.name + "' is too large: its squared norm "
                                     "overflows (rescale the embedding or the weight)");
        s.fold_ticket = ticket;
        due = floor_due(s);
        old_floor = s.floor;
        old = s.base;
        r0 = s.rank;
        if (ref && s.ceil_ref == ref->id) old_ceil = s.ceil, old_cert = s.ceil_cert;
        wrows.assign(s.W.begin(), s.W.begin() + static_cast<std::ptrdiff_t>(r0 * d));
        crow.assign(s.crow.begin(), s.crow.begin() + static_cast<std::ptrdiff_t>(r0));
        rows.reserve((r0 + 1) * d);
        rows.assign(s.U.begin(), s.U.begin() + static_cast<std::ptrdiff_t>(r0 * d));
        rows.insert(rows.end(), u, u + d);
    }
    lock.unlock();
    std::shared_ptr<const Base> B;
    double floor = 0.0, ceil = 0.0, cert = old_cert;
    std::exception_ptr failed;
    try {
        std::vector<double> A = arm::base_matrix(*old, d);
        arm::add_gram(A, rows.data(), r0 + 1, d);
        B = arm::dense_base(std::move(A), d, name);
        floor = !ref ? 0.0 : due ? arm::certify_floor(*B, *ref, d) : old_floor;
        // The new base G + U^T U <= lambda_max(I + W W^T) G: Gershgorin's bound on the r0 rows
        // and u (arm::gersh), times the old ceiling; certified again once it is loose.
        std::vector<double> c(r0);
        if (r0 > 0) K.gemv_rect(wrows.data(), wu, c.data(), r0, d);
        double g = 1.0, last = 0.0;
        for (std::size_t i = 0; i < r0; ++i) {
            g = std::max(g, crow[i] + std::fabs(c[i]));
            last += std::fabs(c[i]);
        }
        g = std::max(g, last + std::fabs(1.0 + K.dot(wu, wu, d)));
        ceil = old_ceil > 0.0 ? old_ceil * g : 0.0;
        if (ref && (!(ceil > 0.0) || ceil > kCeilSlack * cert))
            ceil = cert = arm::certify_ceiling(*B, *ref, d);
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
    // base; b takes this row; beta = R b, C^-1 and omega exactly (arm::refactor).
    ArmState next = s;
    next.base = B;
    next.rank = s.rank - r0;
    next.U.assign(s.U.begin() + static_cast<std::ptrdiff_t>(r0 * d), s.U.end());
    next.W.assign(next.rank * d, 0.0);
    for (std::size_t i = 0; i < next.rank; ++i)
        arm::whiten(*B, next.U.data() + i * d, next.W.data() + i * d, d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) next.b[t * d + j] += ys[t] * u[j];
    arm::refactor(next, dim_, n_targets_);
    next.floor = floor;
    next.floor_ref = ref ? ref->id : 0;
    if (due) next.floor_n = next.n_obs + 1;
    next.ceil = ceil;
    next.ceil_cert = cert;
    next.ceil_ref = ref ? ref->id : 0;
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
    arm::refactor(*arms_[index_of(name)], dim_, n_targets_);
}

void Pool::refactor_all() {
    std::unique_lock lock(mu_);
    for (auto& s : arms_) arm::refactor(*s, dim_, n_targets_);
}

void Pool::observe(const std::string& name, const double* x, bool intercept, double quality,
                   double output_tokens, double weight) {
    if (n_targets_ != 2) throw std::invalid_argument("observe needs a 2-target pool");
    thread_local std::vector<double> z;
    z.resize(dim_);
    features(x, intercept ? dim_ - 1 : dim_, intercept, z.data(), "x");
    double y[2];
    targets(quality, output_tokens, y);
    check_weight(weight);
    update(name, z.data(), y, weight);
}

void Pool::update(const std::string& name, const double* x, const double* y, double weight) {
    update_impl(name, x, y, weight, true);
}

void Pool::update_impl(const std::string& name, const double* x, const double* y, double weight,
                       bool fold_unlocked_ok) {
    if (!(weight > 0.0) || !std::isfinite(weight))
        throw std::invalid_argument("weight must be finite and > 0");
    const std::size_t d = dim_, T = n_targets_;
    std::vector<double>& buf = arm::scratch(3 * d + T);
    double *v = buf.data(), *u = v + d, *w = u + d, *ys = w + d;
    const double sw = std::sqrt(weight);
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    if (!cache_get(s.base->id, x, v)) {
        arm::whiten(*s.base, x, v, d);
        cache_put(s.base->id, x, v);  // repeated feedback on one query (several LLMs, thumbs)
    }
    for (std::size_t j = 0; j < d; ++j) u[j] = sw * x[j], w[j] = sw * v[j];
    for (std::size_t t = 0; t < T; ++t) ys[t] = sw * y[t];
    if (fold_unlocked_ok && s.rank + 1 >= max_rank_ && s.fold_ticket == 0) {
        if (fold_unlocked(lock, name, u, w, ys)) return;
        update_impl(name, x, y, weight, false);  // the arm changed meanwhile: apply the row here
        return;
    }
    auto step = [&](ArmState& a) {
        if (!arm::append_row(a, d, T, max_rank_, u, w, ys)) {
            // Rare: fold a copy into a fresh base, on which the row is well conditioned.
            ArmState next = a;
            const double f = next.floor;
            arm::fold(next, dim_, n_targets_);
            refloor(next, f);
            arm::whiten(*next.base, x, v, d);
            for (std::size_t j = 0; j < d; ++j) w[j] = sw * v[j];
            if (!arm::append_row(next, d, T, max_rank_, u, w, ys))
                throw std::runtime_error("update of '" + a.name + "' is not numerically valid");
            a = std::move(next);
        }
        ++a.n_obs;
        if (++a.since_refactor >= refactor_every_) arm::refactor(a, dim_, n_targets_);
        if (a.rank >= rank_cap()) {  // the unlocked fold fell behind
            const double f = a.floor;
            arm::fold(a, dim_, n_targets_);
            refloor(a, f);
        }
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
            arm::whiten(*next.base, X + r * d, w.data(), d);
            if (!arm::append_row(next, d, T, max_rank_, X + r * d, w.data(), Y + r * T)) {
                const double f = next.floor;
                arm::fold(next, dim_, n_targets_);
                refloor(next, f);
                arm::whiten(*next.base, X + r * d, w.data(), d);
                if (!arm::append_row(next, d, T, max_rank_, X + r * d, w.data(), Y + r * T))
                    throw std::runtime_error("update of '" + name + "' is not numerically valid");
            }
        }
    } else {
        // Fold the existing rows and the batch into a base of its own in one factorisation.
        std::vector<double> A = arm::base_matrix(*next.base, d);
        arm::add_gram(A, next.U.data(), next.rank, d);
        arm::add_gram(A, X, n, d);
        for (std::size_t r = 0; r < n; ++r) {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t j = 0; j < d; ++j) next.b[t * d + j] += Y[r * T + t] * X[r * d + j];
        }
        next.base = arm::dense_base(std::move(A), d, next.name);
        next.rank = 0;
        next.U.clear(), next.W.clear(), next.Cinv.clear(), next.omega.clear();
        next.fold_ticket = 0;
        next.ceil = 0.0;  // the batch's rows were never whitened: certified again (refloor)
    }
    next.n_obs += n;
    arm::refactor(next, dim_, n_targets_);
    if (next.base != s.base) refloor(next, s.floor);  // the base grew: the old floor holds
    s = std::move(next);
}

std::vector<double> Pool::theta(const std::string& name) const {
    std::shared_lock lock(mu_);
    return arm::theta(*arms_[index_of(name)], dim_, n_targets_);
}

ArmView Pool::arm(const std::string& name) const {
    ArmState s;
    {
        std::shared_lock lock(mu_);
        s = *arms_[index_of(name)];
    }
    return arm::view(s, dim_, n_targets_);
}

}  // namespace mixllm
