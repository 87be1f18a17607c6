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
#include "mixllm/model.hpp"

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
                // A = c (G + U^T U) (forgetting; c = 1 without): x^T A^{-1} x = quad / c.
                per_arm_row(k, r0 + r, static_cast<const double*>(means), quad / s.scale);
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

namespace {

// x^T A^{-1} x from v = R x (vv = v.v) for the arm's base R: v.v - p.g, p = W v, g = Cinv p.
double arm_quad(const Kernels& K, const ArmState& s, const double* v, double vv, std::size_t d,
                double* p, double* g) {
    const std::size_t rk = s.rank;
    if (rk == 0) return vv;
    K.gemv_rect(s.W.data(), v, p, rk, d);
    for (std::size_t i = 0; i < rk; ++i) g[i] = K.dot(s.Cinv.data() + i * rk, p, rk);
    return vv - K.dot(p, g, rk);
}

}  // namespace

// Bound and refine (pool.hpp): each query is whitened by the reference base S only; an arm on
// S (or on a scalar base) gets its exact bonus from that, any other arm the certified bound
// bonus <= |R_S x| / sqrt(floor) until it could win, when its own base whitens the query and
// its bonus becomes exact. The choice is the exact score's argmax, first index on ties.
void Pool::score_into(ScoreResult& out, const double* X, std::size_t B, const double* in_tokens,
                      const ScoreParams& p, bool with_terms, std::uint64_t known_version) const {
    std::shared_lock lock(mu_);
    const std::size_t n_arms = arms_.size(), d = dim_, T = n_targets_;
    if (n_arms == 0) throw std::invalid_argument("the pool is empty");
    out.version = version_;
    out.choice.assign(B, -1);
    out.terms.clear();
    if (with_terms) out.terms.resize(B * n_arms * kNumTerms);
    out.names.clear();
    if (version_ != known_version && known_version != kSkipNames)
        for (const auto& a : arms_) out.names.push_back(a->name);
    const Kernels& K = kernels();
    // A negative alpha would turn the bonus's upper bound into a lower bound on the score.
    const bool f32 = float32(), exact = exact_bonus() || p.alpha < 0.0;
    const bool use_pen = p.tau > 0.0 && std::isfinite(p.tau);
    const Base* S = reference_.get();
    // The bound is certified on exact arithmetic; the rounding of |R_S x| (float32 panels:
    // 6 2^-24, kernels.hpp) and of the sums is covered by this margin.
    const double slack = f32 ? 1.0 + 1e-5 : 1.0 + 1e-12;
    // The lower bounds (a ceiling's and Gershgorin's) rest on W and the bases as computed, whose
    // rounding is of the order of d 2^-53 relative: a wider margin.
    const double slack_lo = f32 ? 1.0 + 1e-5 : 1.0 + 1e-9;
    // Per-thread buffers: per arm (n_arms each) pen, base score, value, bonus, state; then the
    // whitened query and the small products.
    thread_local std::vector<double> buf;
    thread_local std::vector<unsigned char> state;  // 0 exact, 1 bounded, 2 unknown
    constexpr std::size_t kChunk = 64;  // queries whitened by S in one pass over its triangle
    const std::size_t nb_max = std::min(B, kChunk);
    buf.resize(7 * n_arms + (nb_max + 1) * d + 2 * rank_cap() + T);
    state.resize(n_arms);
    double* pen = buf.data();
    double* s0 = pen + n_arms;
    double* val = s0 + n_arms;
    double* bon = val + n_arms;
    double* outtok = bon + n_arms;
    double* qual = outtok + n_arms;
    double* low = qual + n_arms;  // a lower bound on each arm's score (= val once exact)
    double* VS = low + n_arms;   // nb_max x d: the chunk whitened by S
    double* v = VS + nb_max * d;
    double* pp = v + d;
    double* g = pp + rank_cap();
    double* means = g + rank_cap();
    for (std::size_t k = 0; k < n_arms; ++k)
        pen[k] = use_pen ? std::expm1(std::max(arms_[k]->wait, 0.0) / p.tau) : 0.0;
    auto whiten_into = [&](const Base& Bs, const double* z, double* w) {
        if (Bs.scalar > 0.0) {
            const double c = 1.0 / std::sqrt(Bs.scalar);
            for (std::size_t i = 0; i < d; ++i) w[i] = c * z[i];
        } else if (f32) {
            K.panel_mv_f32(Bs.P32.data(), z, w, d);
        } else {
            K.panel_mv(Bs.P.data(), z, w, d);
        }
        // The update after a decision reuses R x from the cache: only a float64 one, so that
        // the float32 whitening never enters the state (the update recomputes it).
        if (B == 1 && (!f32 || Bs.scalar > 0.0)) cache_put(Bs.id, z, w);
    };
    for (std::size_t r = 0; r < B; ++r) {
        const double* z = X + r * d;
        if (S != nullptr && r % kChunk == 0) {
            const std::size_t nb = std::min(kChunk, B - r);
            if (nb == 1) {
                whiten_into(*S, z, VS);
            } else if (S->scalar > 0.0) {
                const double c = 1.0 / std::sqrt(S->scalar);
                for (std::size_t i = 0; i < nb * d; ++i) VS[i] = c * z[i];
            } else if (f32) {
                K.panel_mm_f32(S->P32.data(), z, nb, d, VS);
            } else {
                K.panel_mm(S->P.data(), z, nb, d, VS);
            }
        }
        const double* vS = VS + (r % kChunk) * d;
        const double vvS = S != nullptr ? K.dot(vS, vS, d) : 0.0;
        // An arm's exact bonus from its own base's whitening of z.
        // The score in the formula's order of operations (pool.hpp).
        auto score_of = [&](std::size_t k, double b) {
            return (s0[k] + p.alpha * b) - (p.beta != 0.0 ? p.beta * pen[k] : 0.0);
        };
        auto refine = [&](std::size_t k) {
            const ArmState& s = *arms_[k];
            const double* w = vS;
            if (S == nullptr || s.base.get() != S) {
                whiten_into(*s.base, z, v);
                w = v;
            }
            const double quad = arm_quad(K, s, w, w == vS ? vvS : K.dot(w, w, d), d, pp, g);
            bon[k] = std::sqrt(std::max(quad, 0.0) / s.scale);  // A = c (G + U^T U)
            val[k] = low[k] = score_of(k, bon[k]);
            state[k] = 0;
        };
        // bonus_k >= |R_S z| / sqrt(C_k gersh_k c_k), C_k the arm's certified ceiling against
        // S (1 on S itself), gersh_k Gershgorin's bound on its corrections and c_k its scale
        // (A_k = c_k (G_k + U_k^T U_k) <= c_k gersh_k G_k <= c_k gersh_k C_k S); 0 when no
        // ceiling is known.
        auto bonus_low = [&](const ArmState& s) {
            const double c = s.base.get() == S ? 1.0 : s.ceil_ref == S->id ? s.ceil : 0.0;
            return c > 0.0 ? std::sqrt(vvS / (c * arm::gersh(s) * s.scale)) / slack_lo : 0.0;
        };
        for (std::size_t k = 0; k < n_arms; ++k) {
            const ArmState& s = *arms_[k];
            K.gemv_rect(s.theta.data(), z, means, T, d);
            const double q = qual[k] = means[kQuality];
            outtok[k] = predicted_tokens(means[kLogTokens]);
            const double cost = (in_tokens[r] * s.input_price + outtok[k] * s.output_price) * 1e-6;
            // lam = inf ignores the cost even when it overflows (inf * 0 would be NaN).
            s0[k] = q - (p.inv_lam != 0.0 ? cost * p.inv_lam : 0.0);
            if (exact || S == nullptr || s.base->scalar > 0.0 ||
                (s.base.get() == S && s.rank == 0)) {
                refine(k);
            } else if (s.base.get() == S) {  // A_k = c_k (S + U^T U) >= c_k S: floor 1 (times
                                             // the scale), refined in O(r d)
                bon[k] = std::sqrt(vvS / s.scale) * slack;
                val[k] = score_of(k, bon[k]);
                low[k] = score_of(k, bonus_low(s));
                state[k] = 1;
            } else if (s.floor > 0.0 && s.floor_ref == S->id) {  // A_k >= c_k floor_k S
                bon[k] = std::sqrt(vvS / (s.floor * s.scale)) * slack;
                val[k] = score_of(k, bon[k]);
                low[k] = score_of(k, bonus_low(s));
                state[k] = 1;
            } else {
                bon[k] = std::numeric_limits<double>::infinity();
                val[k] = p.alpha > 0.0 ? bon[k] : score_of(k, 0.0);
                low[k] = score_of(k, 0.0);
                state[k] = 2;
            }
        }
        // The largest value, first index on ties (a NaN never wins); an arm whose value is
        // only an upper bound is refined and the search repeats, until the winner is exact or
        // certified: its score's lower bound above every other arm's value (each >= that
        // arm's exact score), so that it is exact LinUCB's unique argmax. With alpha = 0 the
        // bonus does not enter the score: bounded values are exact scores.
        std::int64_t best = -1;
        for (;;) {
            double bv = -std::numeric_limits<double>::infinity();
            double second = -std::numeric_limits<double>::infinity();
            best = -1;
            for (std::size_t k = 0; k < n_arms; ++k) {
                if (val[k] > bv) {
                    if (best >= 0) second = bv;
                    bv = val[k], best = static_cast<std::int64_t>(k);
                } else if (val[k] > second) {
                    second = val[k];
                }
            }
            if (best < 0) break;
            const auto kb = static_cast<std::size_t>(best);
            if (state[kb] == 0 || (state[kb] == 1 && p.alpha == 0.0)) break;
            if (state[kb] == 1 && low[kb] > second) break;
            refine(kb);
        }
        // Unknown bounds (no certified floor) are refined for the terms as well.
        for (std::size_t k = 0; k < n_arms; ++k)
            if (state[k] == 2 && with_terms) refine(k);
        out.choice[r] = best < 0 ? 0 : best;  // arm 0 keeps every decision valid
        if (with_terms)
            for (std::size_t k = 0; k < n_arms; ++k) {
                const ArmState& s = *arms_[k];
                double* t = out.terms.data() + (r * n_arms + k) * kNumTerms;
                const double cost =
                    (in_tokens[r] * s.input_price + outtok[k] * s.output_price) * 1e-6;
                t[0] = qual[k], t[1] = outtok[k], t[2] = cost, t[3] = bon[k], t[4] = pen[k];
                t[5] = state[k] == 0 ? val[k] : score_of(k, bon[k]);
            }
    }
}

}  // namespace mixllm
