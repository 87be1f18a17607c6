// Scoring: the MixLLM score of every arm for a batch of queries (pool.hpp's formula), under the
// shared lock; one triangular product per distinct base, then O(r_k d + T d) per arm. The
// query cache hands R x from a decision to the update that follows on the same query.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mixllm/arm.hpp"
#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

namespace mixllm {

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
    std::vector<double>& buf = arm::scratch(V_size + vv_size + 2 * rank_cap() + T);
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

}  // namespace mixllm
