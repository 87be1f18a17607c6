// The routing state of a pool of LLMs: one online ridge regression per LLM, several targets
// sharing one design matrix, and the LinUCB/MixLLM scoring over all of them.
//
// Per LLM k (an "arm"):
//   A_k     = ridge * I + sum x x^T                (d x d, kept for exact re-anchoring)
//   Ainv_k  = A_k^{-1}                              (Sherman-Morrison rank-1 updates)
//   b_k     = ridge * theta0_k + sum x y^T          (T x d, target-major)
//   theta_k = Ainv_k b_k                            (T x d, updated by recursive least squares)
// Target 0 is quality, target 1 is log1p(output tokens).
//
// Score of arm k for a query x with input tokens n_in and waiting time w_k:
//   q_k    = theta_k[0] . x
//   len_k  = expm1(clamp(theta_k[1] . x, 0, max_log_tokens))
//   cost_k = (n_in * input_price_k + len_k * output_price_k) * 1e-6          (USD)
//   bonus_k = sqrt(x^T Ainv_k x)
//   pen_k  = expm1(w_k / tau)                (w_k >= 0 the arm's waiting time; 0 if tau is inf)
//   score_k = q_k - cost_k / lam + alpha * bonus_k - beta * pen_k
// and the decision is the first arm with the largest score.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

namespace mixllm {

constexpr std::size_t kQuality = 0;
constexpr std::size_t kLogTokens = 1;
constexpr std::size_t kNumTerms = 6;  // quality, output_tokens, cost, bonus, penalty, score
constexpr double kMaxLogTokens = 20.0;

struct ScoreParams {
    double inv_lam = 0.0;  // 1 / lam; 0 means quality only
    double alpha = 0.0;
    double beta = 0.0;
    double tau = 0.0;      // seconds; <= 0 or inf disables the penalty
};

struct ArmState {
    std::string name;
    std::vector<double> A, Ainv, b, theta;
    double input_price = 0.0, output_price = 0.0;  // USD per 1M tokens
    double wait = 0.0;                               // current waiting time, seconds
    std::uint64_t n_obs = 0;
    std::uint64_t since_refactor = 0;
};

struct ScoreResult {
    std::vector<std::int64_t> choice;  // B
    std::vector<double> terms;         // B x K x kNumTerms, empty unless asked for
    std::vector<std::string> names;    // the pool's arms when the scores were taken
};

struct PredictResult {
    std::vector<double> means;  // B x K x T
    std::vector<double> bonus;  // B x K
    std::vector<std::string> names;
};

// Arms are addressed by name, so that a concurrent add or remove can never make an index
// point at another LLM: every result carries the names it was computed for.
class Pool {
  public:
    Pool(std::size_t dim, std::size_t n_targets, std::size_t refactor_every);

    std::size_t dim() const { return dim_; }
    std::size_t n_targets() const { return n_targets_; }
    std::size_t refactor_every() const { return refactor_every_; }
    std::size_t size() const;
    std::vector<std::string> names() const;

    // New arm with A = ridge * I and prior mean theta0 (T x d; nullptr means zeros).
    void add_arm(const std::string& name, double ridge, const double* theta0, double input_price,
                 double output_price);
    // New arm from full state (loading, merging). Ainv and theta may be nullptr: then they
    // are computed exactly from A and b.
    void add_arm_state(const std::string& name, const double* A, const double* Ainv,
                       const double* b, const double* theta, std::uint64_t n_obs,
                       std::uint64_t since_refactor, double input_price, double output_price);
    void remove_arm(const std::string& name);
    void set_prices(const std::string& name, double input_price, double output_price);
    void set_wait(const std::string& name, double seconds);

    // One observation (x: d, y: T): A and b gain x x^T and x y^T; Sherman-Morrison keeps Ainv
    // and recursive least squares keeps theta; every refactor_every updates, an exact refactor.
    void update(const std::string& name, const double* x, const double* y);
    // n observations at once (X: n x d, Y: n x T): exact, followed by a refactorisation.
    void update_batch(const std::string& name, const double* X, const double* Y, std::size_t n);
    // Exact Ainv = A^{-1} and theta = Ainv b for one arm, or for every arm.
    void refactor(const std::string& name);
    void refactor_all();

    PredictResult predict(const double* X, std::size_t B) const;
    ScoreResult score(const double* X, std::size_t B, const double* in_tokens,
                      const ScoreParams& p, bool with_terms) const;

    // A copy of one arm's state, taken under the shared lock.
    ArmState arm(const std::string& name) const;

  private:
    std::size_t index_of(const std::string& name) const;  // caller holds the lock
    void refactor_locked(ArmState& s);
    void push(std::unique_ptr<ArmState> s);

    std::size_t dim_, n_targets_, refactor_every_;
    std::vector<std::unique_ptr<ArmState>> arms_;
    mutable std::shared_mutex mu_;
};

}  // namespace mixllm
