// Pool membership, its lock, and updates: arms added, removed and repriced by name; one
// observation (or a batch) applied to an arm under the exclusive lock, its fold into a base of
// its own with the lock released (pool.hpp). One arm's algebra is in arm.cpp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#include <unistd.h>

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
    if (floor_due(s)) certify(s);  // (with forgetting, also once c floor has halved: pool.hpp)
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

void Pool::set_discount(double gamma, double ridge) {
    if (!(gamma > 0.0 && gamma <= 1.0))
        throw std::invalid_argument("discount must be in (0, 1], got " + std::to_string(gamma));
    if (!(ridge > 0.0) || !std::isfinite(ridge))
        throw std::invalid_argument("the discount's ridge must be finite and > 0");
    // The pseudo-row's squared norm rho / c must stay a row the core accepts.
    const double rho = (1.0 - gamma) * ridge * static_cast<double>(dim_);
    if (!(rho / kMinScale <= kMaxRowNorm2))
        throw std::invalid_argument("the discount's pseudo-rows would be too large: lower ridge");
    std::unique_lock lock(mu_);
    discount_ = gamma;
    prior_ = ridge;
}

double Pool::discount() const {
    std::shared_lock lock(mu_);
    return discount_;
}

double Pool::discount_prior() const {
    std::shared_lock lock(mu_);
    return prior_;
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

// A fold of an arm's rows into a base of its own (pool.hpp): what is copied under the lock,
// then the O(d^3) work done without it, then installed under it.
struct Pool::FoldJob {
    std::string name;
    std::uint64_t ticket = 0;
    std::shared_ptr<const Base> old, ref;
    std::vector<double> rows;   // the rows folded (r x d): the arm's corrections, then any row
    std::vector<double> wrows;  // the same whitened by the old base
    std::vector<double> crow;   // Gershgorin row sums of the arm's r0 corrections
    std::size_t r0 = 0;         // how many of the rows are the arm's corrections
    bool due = true;            // the floor is to be certified again
    double old_floor = 0.0, old_ceil = 0.0, old_cert = 0.0;
    // Results (set by the thread that computes them; done and failed under Pool::fold_mu_):
    std::shared_ptr<Base> B;    // G + rows^T rows, renormalised (scaled) when installed
    double floor = 0.0, ceil = 0.0, cert = 0.0;
    bool done = false, failed = false;
    long pid = 0;  // the process whose thread computes it
};

// Under the lock: the arm's first r0 corrections (all of them by default), ticketed.
void Pool::fold_prepare(ArmState& s, FoldJob& job, std::size_t r0) const {
    const std::size_t d = dim_;
    r0 = std::min(r0, s.rank);
    job.name = s.name;
    job.ticket = next_fold_ticket();
    job.ref = reference_;
    job.old = s.base;
    // Due by the observations the arm had when its first r0 rows were all it held (the same
    // whenever the job is prepared: a restored copy folds as the original did).
    // (With forgetting an observation is two rows.)
    const std::uint64_t after = (s.rank - r0) / (discount_ < 1.0 ? 2 : 1);
    const std::uint64_t n_at = s.n_obs - std::min<std::uint64_t>(s.n_obs, after);
    job.due = !reference_ || s.floor_ref != reference_->id || s.floor <= 0.0 ||
              n_at + 1 >= 2 * s.floor_n || floor_decayed(n_at, s.floor_n);
    job.old_floor = s.floor;
    job.r0 = r0;
    if (job.ref && s.ceil_ref == job.ref->id) job.old_ceil = s.ceil, job.old_cert = s.ceil_cert;
    const auto n = static_cast<std::ptrdiff_t>(job.r0 * d);
    job.rows.assign(s.U.begin(), s.U.begin() + n);
    job.wrows.assign(s.W.begin(), s.W.begin() + n);
    s.fold_ticket = job.ticket;
}

// Without the lock: the new base G + rows^T rows, its floor and its ceiling. The ceiling
// compounds, G_new <= lambda_max(I + W W^T) G <= gersh G (the folded rows whitened by the old
// base), and is certified again once it is loose (Pool::ceil_due's rule).
void Pool::fold_compute(FoldJob& job) const {
    const std::size_t d = dim_, r = job.rows.size() / d;
    std::vector<double> A = arm::base_matrix(*job.old, d);
    arm::add_gram(A, job.rows.data(), r, d);
    job.B = arm::dense_base(std::move(A), d, job.name);
    const auto& ref = job.ref;
    job.floor = !ref ? 0.0 : job.due ? arm::certify_floor(*job.B, *ref, d) : job.old_floor;
    double g = 1.0;
    job.crow = arm::gersh_rows(job.wrows.data(), r, d);  // over the folded rows
    for (double v : job.crow) g = std::max(g, v);
    job.cert = job.old_cert;
    job.ceil = job.old_ceil > 0.0 ? job.old_ceil * g : 0.0;
    if (ref && (!(job.ceil > 0.0) || job.ceil > kCeilSlack * job.cert))
        job.ceil = job.cert = arm::certify_ceiling(*job.B, *ref, d);
}

// Under the lock: the arm, if it still holds this job's ticket, moves onto the new base; its
// rows past the job's r0 stay corrections (whitened by the new base). With u (targets ys), a
// row that is not yet in the arm joins the fold (b += ys u, one more observation). Returns
// false, the arm untouched, when it was removed, replaced or folded meanwhile.
bool Pool::fold_install(const FoldJob& job, const double* u, const double* ys) {
    const std::size_t d = dim_, T = n_targets_;
    ArmState* sp = nullptr;
    for (auto& a : arms_)
        if (a->name == job.name && a->fold_ticket == job.ticket) sp = a.get();
    if (sp == nullptr) return false;
    ArmState& s = *sp;
    ArmState next = s;  // on a copy: a failure leaves the arm as it was
    next.fold_ticket = 0;
    // Renormalised by p = 4^m at the arm's scale now (pool.hpp): the base, b, the rows that stay
    // corrections (times 2^m), the floor and the ceiling; all exact, so that nothing changes
    // but the representation. The scale now is fixed by the stream (the installing update).
    const int m = arm::renorm_exponent(s.scale);
    const double p = std::ldexp(1.0, 2 * m), q = std::ldexp(1.0, m);
    arm::scale_base(*job.B, m, d);
    next.scale = s.scale / p;
    next.base = job.B;
    next.rank = s.rank - job.r0;
    next.U.assign(s.U.begin() + static_cast<std::ptrdiff_t>(job.r0 * d), s.U.end());
    if (m != 0)
        for (double& v : next.U) v *= q;
    next.W.assign(next.rank * d, 0.0);
    for (std::size_t i = 0; i < next.rank; ++i)
        arm::whiten(*job.B, next.U.data() + i * d, next.W.data() + i * d, d);
    if (u != nullptr)
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t j = 0; j < d; ++j) next.b[t * d + j] += ys[t] * u[j];
    if (m != 0)
        for (double& v : next.b) v *= p;
    arm::refactor(next, dim_, n_targets_);
    next.floor = job.floor * p;
    next.floor_ref = job.ref ? job.ref->id : 0;
    if (job.due) next.floor_n = next.n_obs + (u != nullptr ? 1 : 0);
    next.ceil = job.ceil * p;
    next.ceil_cert = job.cert * p;
    next.ceil_ref = job.ref ? job.ref->id : 0;
    for (std::size_t i = 0; i < T * d; ++i)
        if (!std::isfinite(next.b[i]) || !std::isfinite(next.beta[i]))
            throw std::runtime_error("update of '" + job.name + "' is too large: the statistics "
                                     "would overflow (rescale the targets)");
    if (u != nullptr) ++next.n_obs;
    s = std::move(next);
    return true;
}

// The row u (targets ys, both weighted; wu = u whitened by the arm's base) would take the arm
// to max_rank: fold it, with the row, into a base of its own, the O(d^3) factorisation with the
// lock released, so that decisions and other updates go on meanwhile (rows that arrive stay
// corrections, on the new base). The row goes in with the fold or not at all: a failure leaves
// the arm as it was, as a fold under the lock did. Called with the lock held; returns with it
// released. Returns false when the arm was replaced or folded meanwhile (the caller then
// applies the row under the lock).
bool Pool::fold_unlocked(std::unique_lock<std::shared_mutex>& lock, const std::string& name,
                         const double* u, const double* wu, const double* ys) {
    const std::size_t d = dim_;
    FoldJob job;
    {
        ArmState& s = *arms_[index_of(name)];
        if (!(kernels().dot(u, u, d) <= kMaxRowNorm2))
            throw std::runtime_error("update of '" + s.name + "' is too large: its weighted "
                                     "squared norm exceeds 1e150 (rescale the embedding or the "
                                     "weight)");
        fold_prepare(s, job, s.rank);
        job.rows.insert(job.rows.end(), u, u + d);
        job.wrows.insert(job.wrows.end(), wu, wu + d);
    }
    lock.unlock();
    std::exception_ptr failed;
    try {
        fold_compute(job);
    } catch (...) {
        failed = std::current_exception();
    }
    lock.lock();
    if (failed) {
        for (auto& a : arms_)
            if (a->name == name && a->fold_ticket == job.ticket) a->fold_ticket = 0;
        lock.unlock();
        std::rethrow_exception(failed);
    }
    bool done = false;
    try {
        done = fold_install(job, u, ys);
    } catch (...) {
        lock.unlock();
        throw;
    }
    lock.unlock();
    return done;
}

// The arm has reached max_rank: its first max_rank corrections are folded by a thread of its
// own, and the update that brings the arm to max_rank + fold_lag() installs the result (waiting
// for it only if it is not ready), so that when a fold lands depends on the stream alone: a
// router and its restored copy keep learning identically. Caller holds the lock. Without a
// thread (none could be started) the installing update computes the fold itself.
void Pool::schedule_fold(ArmState& s) {
    auto job = std::make_shared<FoldJob>();
    fold_prepare(s, *job, max_rank_);
    job->pid = static_cast<long>(::getpid());
    {
        std::lock_guard g(fold_mu_);
        // Jobs no arm holds any more (the arm removed, replaced, or folded under the lock):
        // dropped once their thread is done with them.
        jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(),
                                   [&](const std::shared_ptr<FoldJob>& j) {
                                       if (!j->done && j->pid != 0) return false;
                                       for (const auto& a : arms_)
                                           if (a->fold_ticket == j->ticket) return false;
                                       return true;
                                   }),
                    jobs_.end());
        fold_pid_ = job->pid;
        ++folds_running_;
        jobs_.push_back(job);
    }
    try {
        std::thread([this, job] {
            bool failed = false;
            try {
                fold_compute(*job);
            } catch (...) {
                failed = true;  // e.g. not numerically positive definite: the arm keeps its rows
            }
            std::lock_guard g(fold_mu_);
            job->done = true;
            job->failed = failed;
            --folds_running_;
            fold_cv_.notify_all();  // under fold_mu_: the pool outlives this line (wait_folds)
        }).detach();
    } catch (...) {
        std::lock_guard g(fold_mu_);
        --folds_running_;
        job->pid = 0;  // no thread: the installing update computes it
    }
}

// The update that brought the arm to max_rank + fold_lag(): the scheduled fold installed (its
// result awaited if it is not ready, computed here if no thread of this process has it).
// Caller holds the lock.
void Pool::finish_fold(ArmState& s) {
    std::shared_ptr<FoldJob> job;
    {
        std::unique_lock g(fold_mu_);
        for (auto it = jobs_.begin(); it != jobs_.end(); ++it)
            if ((*it)->ticket == s.fold_ticket) {
                job = *it;
                jobs_.erase(it);
                break;
            }
        const bool ours = job && job->pid == static_cast<long>(::getpid());
        if (ours) fold_cv_.wait(g, [&] { return job->done; });
    }
    bool failed = !job;
    if (job && !job->done) {  // no thread (or a forked child's copy of the parent's job)
        try {
            fold_compute(*job);
        } catch (...) {
            failed = true;
        }
    } else if (job) {
        failed = job->failed;
    }
    if (failed) {
        s.fold_ticket = 0;  // the arm keeps its corrections; the next update schedules again
        return;
    }
    fold_install(*job, nullptr, nullptr);
}

void Pool::wait_folds() const {
    std::unique_lock g(fold_mu_);
    if (fold_pid_ != static_cast<long>(::getpid())) return;  // a forked child: none of its own
    fold_cv_.wait(g, [&] { return folds_running_ == 0; });
}

Pool::~Pool() { wait_folds(); }

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

// The row sqrt(weight / c) x, c the arm's scale times gamma (pool.hpp, forgetting; 1 without).
void Pool::append_scaled(ArmState& a, const double* x, const double* v, const double* y,
                         double weight, double gamma) const {
    const std::size_t d = dim_, T = n_targets_;
    thread_local std::vector<double> buf;  // not arm::scratch: the caller holds that one
    buf.resize(3 * d + T);
    double *vv = buf.data(), *u = vv + d, *w = u + d, *ys = w + d;
    auto rows = [&](const ArmState& s, const double* vin) {
        const double f = std::sqrt(weight / (s.scale * gamma));
        if (vin == nullptr) {
            arm::whiten(*s.base, x, vv, d);
            vin = vv;
        }
        for (std::size_t j = 0; j < d; ++j) u[j] = f * x[j], w[j] = f * vin[j];
        for (std::size_t t = 0; t < T; ++t) ys[t] = f * y[t];
    };
    rows(a, v);
    if (arm::append_row(a, d, T, max_rank_, u, w, ys)) return;
    // Rare: fold a copy into a fresh base, on which the row is well conditioned.
    ArmState next = a;
    const double fl = next.floor;
    const double p = arm::fold(next, d, T);
    refloor(next, fl * p);
    rows(next, nullptr);
    if (!arm::append_row(next, d, T, max_rank_, u, w, ys))
        throw std::runtime_error("update of '" + a.name + "' is not numerically valid");
    a = std::move(next);
}

void Pool::update_impl(const std::string& name, const double* x, const double* y, double weight,
                       bool fold_unlocked_ok) {
    if (!(weight > 0.0) || !std::isfinite(weight))
        throw std::invalid_argument("weight must be finite and > 0");
    const std::size_t d = dim_, T = n_targets_;
    std::vector<double>& buf = arm::scratch(3 * d + T);
    double *v = buf.data(), *u = v + d, *w = u + d, *ys = w + d;
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    const double gamma = discount_;
    const std::uint64_t vbase = s.base->id;
    if (!cache_get(vbase, x, v)) {
        arm::whiten(*s.base, x, v, d);
        cache_put(vbase, x, v);  // repeated feedback on one query (several LLMs, thumbs)
    }
    const bool bg = background_folds();
    if (!bg && fold_unlocked_ok && gamma == 1.0 && s.rank + 1 >= max_rank_ &&
        s.fold_ticket == 0) {
        const double f = std::sqrt(weight / s.scale);
        for (std::size_t j = 0; j < d; ++j) u[j] = f * x[j], w[j] = f * v[j];
        for (std::size_t t = 0; t < T; ++t) ys[t] = f * y[t];
        if (fold_unlocked(lock, name, u, w, ys)) return;
        update_impl(name, x, y, weight, false);  // the arm changed meanwhile: apply the row here
        return;
    }
    // With forgetting an observation is two rows (its own, then the prior's pseudo-row), and
    // with background folds off its fold runs under the lock (pool.hpp).
    const std::size_t nrows = gamma < 1.0 ? 2 : 1;
    const std::size_t cap = (!bg && gamma < 1.0) ? max_rank_ : rank_cap();
    auto renormalise = [&](ArmState& a) {
        const double fl = a.floor;
        const double p = arm::fold(a, dim_, n_targets_);
        refloor(a, fl * p);
    };
    auto step = [&](ArmState& a) {
        if (a.scale * gamma < kMinScale) renormalise(a);  // before the rows grow too large
        append_scaled(a, x, a.base->id == vbase ? v : nullptr, y, weight, gamma);
        if (gamma < 1.0) {
            // sqrt(rho) e_j, j = n_obs mod d, targets 0; R e_j is column j of R.
            const std::size_t j = static_cast<std::size_t>(a.n_obs % d);
            thread_local std::vector<double> e, re, zero;
            e.assign(d, 0.0), re.assign(d, 0.0), zero.assign(T, 0.0);
            e[j] = 1.0;
            const Base& B = *a.base;
            if (B.scalar > 0.0) {
                re[j] = 1.0 / std::sqrt(B.scalar);
            } else {
                for (std::size_t i = j; i < d; ++i) re[i] = B.R[packed_row(i) + j];
            }
            const double rho = (1.0 - gamma) * prior_ * static_cast<double>(d);
            append_scaled(a, e.data(), re.data(), zero.data(), rho, gamma);
        }
        a.scale *= gamma;
        ++a.n_obs;
        if (++a.since_refactor >= refactor_every_) arm::refactor(a, dim_, n_targets_);
        if (a.rank + nrows > cap) renormalise(a);  // the unlocked fold fell behind (or none)
    };
    // append_row throws only before it changes anything, but a refactorisation or a fold can
    // fail after the row went in (a factorisation that is not numerically positive definite):
    // those steps run on a copy, so that a failed update leaves the arm exactly as it was.
    // They come once per refactor_every or max_rank updates, which pays for the copy. (With
    // forgetting, a fold needed between the two rows of one observation -- the second row's
    // bordered inverse inaccurate -- runs on a copy too; should that fold fail, the first row
    // stays in.)
    if (s.since_refactor + 1 >= refactor_every_ || s.rank + 2 * nrows > cap ||
        s.scale * gamma < kMinScale) {
        ArmState next = s;
        step(next);
        s = std::move(next);
    } else {
        step(s);
    }
    if (bg && s.rank >= max_rank_ && s.fold_ticket == 0) schedule_fold(s);
    if (bg && s.fold_ticket != 0 && s.rank >= max_rank_ + fold_lag()) {
        // The install runs on a copy (fold_install): a failure leaves the arm with its rows.
        try {
            finish_fold(s);
        } catch (...) {
            s.fold_ticket = 0;
        }
    }
}

void Pool::update_batch(const std::string& name, const double* X, const double* Y, std::size_t n) {
    const std::size_t d = dim_, T = n_targets_;
    {
        // Forgetting is defined observation by observation (and an arm with a scale takes its
        // rows scaled): one update per row, then the exact refactorisation. Not atomic: a
        // failure keeps the rows before it.
        std::shared_lock lock(mu_);
        const bool rows = discount_ < 1.0 || arms_[index_of(name)]->scale != 1.0;
        lock.unlock();
        if (rows) {
            for (std::size_t r = 0; r < n; ++r) update_impl(name, X + r * d, Y + r * T, 1.0, true);
            refactor(name);
            return;
        }
    }
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
