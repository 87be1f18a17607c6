// Pool state: per-arm online ridge regression and the MixLLM score (formula in pool.hpp).
#include "mixllm/pool.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>

#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

namespace mixllm {

Pool::Pool(std::size_t dim, std::size_t n_targets, std::size_t refactor_every)
    : dim_(dim), n_targets_(n_targets), refactor_every_(refactor_every) {
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
}

void Pool::add_arm(const std::string& name, double ridge, const double* theta0, double input_price,
                   double output_price) {
    if (!(ridge > 0.0) || !std::isfinite(ridge)) throw std::invalid_argument("ridge must be > 0");
    const std::size_t d = dim_, T = n_targets_;
    auto s = std::make_unique<ArmState>();
    s->name = name;
    s->A.assign(d * d, 0.0);
    s->Ainv.assign(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i) {
        s->A[i * d + i] = ridge;
        s->Ainv[i * d + i] = 1.0 / ridge;
    }
    s->theta.assign(T * d, 0.0);
    if (theta0 != nullptr) std::copy(theta0, theta0 + T * d, s->theta.begin());
    s->b.resize(T * d);
    for (std::size_t i = 0; i < T * d; ++i) s->b[i] = ridge * s->theta[i];
    s->input_price = input_price;
    s->output_price = output_price;
    push(std::move(s));
}

void Pool::add_arm_state(const std::string& name, const double* A, const double* Ainv,
                         const double* b, const double* theta, std::uint64_t n_obs,
                         std::uint64_t since_refactor, double input_price, double output_price) {
    const std::size_t d = dim_, T = n_targets_;
    auto s = std::make_unique<ArmState>();
    s->name = name;
    s->A.assign(A, A + d * d);
    s->b.assign(b, b + T * d);
    s->input_price = input_price;
    s->output_price = output_price;
    s->n_obs = n_obs;
    if (Ainv != nullptr && theta != nullptr) {
        s->Ainv.assign(Ainv, Ainv + d * d);
        s->theta.assign(theta, theta + T * d);
        s->since_refactor = since_refactor;
    } else {
        s->Ainv.assign(d * d, 0.0);
        s->theta.assign(T * d, 0.0);
        refactor_locked(*s);  // not shared yet: no lock needed
    }
    push(std::move(s));
}

void Pool::remove_arm(const std::string& name) {
    std::unique_lock lock(mu_);
    arms_.erase(arms_.begin() + static_cast<std::ptrdiff_t>(index_of(name)));
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

void Pool::refactor_locked(ArmState& s) {
    const std::size_t d = dim_, T = n_targets_;
    std::vector<double> work(2 * d * d);
    std::vector<double> inv(d * d);
    if (!spd_inverse(s.A.data(), inv.data(), d, work.data()))
        throw std::runtime_error("design matrix of '" + s.name +
                                 "' is not positive definite; increase ridge");
    s.Ainv.swap(inv);
    const Kernels& K = kernels();
    for (std::size_t t = 0; t < T; ++t)
        K.gemv(s.Ainv.data(), s.b.data() + t * d, s.theta.data() + t * d, d);
    s.since_refactor = 0;
}

void Pool::refactor(const std::string& name) {
    std::unique_lock lock(mu_);
    refactor_locked(*arms_[index_of(name)]);
}

void Pool::refactor_all() {
    std::unique_lock lock(mu_);
    for (auto& s : arms_) refactor_locked(*s);
}

void Pool::update(const std::string& name, const double* x, const double* y) {
    const std::size_t d = dim_, T = n_targets_;
    const Kernels& K = kernels();
    std::vector<double> u(d);
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    K.syr(s.A.data(), x, 1.0, d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t i = 0; i < d; ++i) s.b[t * d + i] += y[t] * x[i];
    // Sherman-Morrison: u = Ainv x; Ainv -= u u^T / (1 + x^T u). The gain Ainv_new x equals
    // u / (1 + x^T u), which drives the recursive least-squares step on theta.
    K.gemv(s.Ainv.data(), x, u.data(), d);
    const double denom = 1.0 + K.dot(x, u.data(), d);
    K.syr(s.Ainv.data(), u.data(), -1.0 / denom, d);
    for (std::size_t t = 0; t < T; ++t) {
        double* th = s.theta.data() + t * d;
        const double err = (y[t] - K.dot(th, x, d)) / denom;
        for (std::size_t i = 0; i < d; ++i) th[i] += err * u[i];
    }
    ++s.n_obs;
    if (++s.since_refactor >= refactor_every_) refactor_locked(s);
}

void Pool::update_batch(const std::string& name, const double* X, const double* Y, std::size_t n) {
    const std::size_t d = dim_, T = n_targets_;
    const Kernels& K = kernels();
    std::unique_lock lock(mu_);
    ArmState& s = *arms_[index_of(name)];
    // Work on a copy so that a failed refactorisation leaves the arm as it was.
    ArmState next = s;
    for (std::size_t r = 0; r < n; ++r) {
        const double* x = X + r * d;
        K.syr(next.A.data(), x, 1.0, d);
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t i = 0; i < d; ++i) next.b[t * d + i] += Y[r * T + t] * x[i];
    }
    next.n_obs += n;
    refactor_locked(next);
    s = std::move(next);
}

PredictResult Pool::predict(const double* X, std::size_t B) const {
    const std::size_t d = dim_, T = n_targets_;
    const Kernels& K = kernels();
    std::shared_lock lock(mu_);
    const std::size_t n_arms = arms_.size();
    PredictResult out;
    out.means.resize(B * n_arms * T);
    out.bonus.resize(B * n_arms);
    std::vector<double> q(B);
    for (std::size_t k = 0; k < n_arms; ++k) {
        const ArmState& s = *arms_[k];
        out.names.push_back(s.name);
        for (std::size_t r = 0; r < B; ++r)
            for (std::size_t t = 0; t < T; ++t)
                out.means[(r * n_arms + k) * T + t] = K.dot(s.theta.data() + t * d, X + r * d, d);
        K.quad_batch(s.Ainv.data(), X, B, d, q.data());
        for (std::size_t r = 0; r < B; ++r) out.bonus[r * n_arms + k] = std::sqrt(std::max(q[r], 0.0));
    }
    return out;
}

ScoreResult Pool::score(const double* X, std::size_t B, const double* in_tokens,
                        const ScoreParams& p, bool with_terms) const {
    const std::size_t d = dim_;
    const Kernels& K = kernels();
    std::shared_lock lock(mu_);
    const std::size_t n_arms = arms_.size();
    if (n_arms == 0) throw std::invalid_argument("the pool is empty");
    ScoreResult out;
    out.choice.assign(B, -1);
    if (with_terms) out.terms.resize(B * n_arms * kNumTerms);
    const bool use_bonus = p.alpha != 0.0 || with_terms;
    const bool use_pen = p.tau > 0.0 && std::isfinite(p.tau);
    std::vector<double> quad(B, 0.0);
    std::vector<double> best(B, -std::numeric_limits<double>::infinity());
    for (std::size_t k = 0; k < n_arms; ++k) {
        const ArmState& s = *arms_[k];
        out.names.push_back(s.name);
        if (use_bonus) K.quad_batch(s.Ainv.data(), X, B, d, quad.data());
        const double pen = use_pen ? std::expm1(std::max(s.wait, 0.0) / p.tau) : 0.0;
        for (std::size_t r = 0; r < B; ++r) {
            const double* x = X + r * d;
            const double q = K.dot(s.theta.data() + kQuality * d, x, d);
            const double l = K.dot(s.theta.data() + kLogTokens * d, x, d);
            const double out_tok = std::expm1(std::clamp(l, 0.0, kMaxLogTokens));
            const double cost = (in_tokens[r] * s.input_price + out_tok * s.output_price) * 1e-6;
            const double bon = use_bonus ? std::sqrt(std::max(quad[r], 0.0)) : 0.0;
            const double sc = q - cost * p.inv_lam + p.alpha * bon - (p.beta != 0.0 ? p.beta * pen : 0.0);
            if (sc > best[r]) {
                best[r] = sc;
                out.choice[r] = static_cast<std::int64_t>(k);
            }
            if (with_terms) {
                double* t = out.terms.data() + (r * n_arms + k) * kNumTerms;
                t[0] = q, t[1] = out_tok, t[2] = cost, t[3] = bon, t[4] = pen, t[5] = sc;
            }
        }
    }
    // A NaN score never wins a comparison; arm 0 keeps every decision valid.
    for (auto& c : out.choice)
        if (c < 0) c = 0;
    return out;
}

ArmState Pool::arm(const std::string& name) const {
    std::shared_lock lock(mu_);
    return *arms_[index_of(name)];
}

}  // namespace mixllm
