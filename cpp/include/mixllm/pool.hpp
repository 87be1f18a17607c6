// The routing state of a pool of LLMs: one online ridge regression per LLM, several targets
// sharing one design matrix, and the LinUCB/MixLLM scoring over all of them.
//
// Per LLM k (an "arm"), the maths (the executable spec is python/mixllm/_reference.py):
//   A_k     = ridge * I + sum x x^T                (d x d)
//   b_k     = ridge * theta0_k + sum x y^T          (T x d, target-major)
//   theta_k = A_k^{-1} b_k                          (T x d)
// Target 0 is quality, target 1 is log1p(output tokens). Here x is what the arms see (z of
// model.hpp: the query with a trailing 1 when the router fits an intercept). The router's calls
// (fit_observed, observe, observe_many, predict_many, route_into) take the raw query and the
// raw observations and go through model.hpp, which builds z and the targets and turns the
// predicted length back into tokens; fit, update, update_batch, predict and score are the same
// in z and y directly (tests, persistence, the reference engine's comparisons).
//
// Score of arm k for a query x with input tokens n_in and waiting time w_k:
//   q_k    = theta_k[0] . x
//   len_k  = expm1(clamp(theta_k[1] . x, 0, max_log_tokens))
//   cost_k = (n_in * input_price_k + len_k * output_price_k) * 1e-6          (USD)
//   bonus_k = sqrt(x^T A_k^{-1} x)
//   pen_k  = expm1(w_k / tau)                (w_k >= 0 the arm's waiting time; 0 if tau is inf)
//   score_k = q_k - cost_k / lam + alpha * bonus_k - beta * pen_k
// and the decision is the first arm with the largest score.
//
// Representation (why a decision does not read K dense inverses). After offline training on
// full-information data every arm has the same Gram matrix, and online feedback changes one
// arm by one rank-1 term at a time. So each arm stores
//   A_k = G + U_k^T U_k          G = the arm's *base*, shared by every arm built from the
//                                same data (an immutable Base, reference-counted); U_k the
//                                r_k correction rows (r_k <= max_rank)
// with R = L^{-1} for G = L L^T (packed lower triangle), and in whitened coordinates
//   v = R x,   W_k = U_k R^T (r_k x d),   C_k = I + W_k W_k^T,   beta_k = R b_k (T x d),
//   omega_k = W_k beta_k^T (r_k x T).
// Woodbury gives A_k^{-1} = R^T (I - W_k^T C_k^{-1} W_k) R, hence with p = W_k v, g = C_k^{-1} p:
//   x^T A_k^{-1} x = v.v - p.g          theta_k[t] . x = beta_k[t] . v - omega_k[:, t] . g
// An update appends a row: with v cached from the decision on the same query it costs
// O(r_k d + r_k^2) (bordered inverse of C_k) plus one transposed triangular product for
// theta_k (below) instead of a refactorisation. When r_k reaches max_rank the arm is *folded*:
// A_k is formed exactly and refactorised into a base of its own (O(d^3)), r_k = 0. By default
// the update that brings the arm to max_rank appends its row as any other and hands the fold
// to a thread of its own (background_folds), which computes the base without the lock
// (decisions and other updates go on; rows that arrive are appended as corrections, up to
// 2 max_rank) and installs it in O(r' d^2 + T d^2) under the lock, the r' rows that came in
// meanwhile becoming the corrections on the new base. With background folds off, the update
// computes the fold itself, with the lock released, and its row goes in with the fold or not
// at all. A fold that cannot keep up (2 max_rank reached) runs under the lock. C_k is SPD with eigenvalues >= 1, so its bordered inverse is well conditioned;
// refactor() recomputes C_k^{-1}, beta_k, omega_k and theta_k exactly from U_k, b_k and the
// base (the re-anchoring of drift), every refactor_every updates and on request.
//
// Decisions: bound and refine (why a decision does not read K triangles once arms fold).
// Each arm keeps theta_k (T x d) explicitly: exact (theta_k above) at every refactorisation and
// fold, and between them one recursive-least-squares step per row,
//   theta += h (y - theta u)^T / sigma,  h = A^{-1} u = R^T (w - W^T g),  sigma = 1 + u^T h,
// which is A'^{-1} b' exactly in exact arithmetic (O(d^2/2 + r d): one transposed triangle).
// So q_k and len_k cost O(T d) per arm whatever its base. The pool keeps one *reference* base
// S (the offline fit's shared base; on restore, the base most arms share) and every arm a
// certified *floor* c_k > 0 with G_k >= c_k S (G_k its base; c_k = 1 on S itself), found by a
// Lanczos estimate of lambda_max(R_G S R_G^T) and certified by a Cholesky factorisation of G_k - c_k S
// when the base is built (fit, add, restore: O(d^3), about a fold's cost). A fold only adds
// to G_k, so its floor stays valid: it is certified again only once the arm's observations
// have doubled since (O(log n) certifications per arm over a stream of n).
// Since A_k = G_k + U_k^T U_k >= G_k >= c_k S,
//   bonus_k = sqrt(x^T A_k^{-1} x) <= sqrt(x^T S^{-1} x / c_k) = |R_S x| / sqrt(c_k),
// an upper bound for every arm from the one triangular product R_S x. A decision whitens the
// query with S only; an arm on S without corrections (or on a scalar base) gets its exact
// bonus from that; any other arm enters with its score's upper bound (alpha >= 0): floor 1 for
// an arm on S with corrections (A_k >= S; refining it costs O(r_k d), no triangle). Each arm
// also has a *ceiling* C_k with G_k <= C_k S (1 on S; for a base of its own certified by a
// Cholesky factorisation of C_k S - G_k when the base is built, and through folds compounded
// as C_k gersh, G_new = G + U^T U <= lambda_max(I + W W^T) G <= gersh G with gersh the
// Gershgorin bound of I + W W^T over the folded rows, certified again once it exceeds 1.5
// times the value last certified), and A_k <= gersh_k G_k for its current corrections
// (Gershgorin's row sums of C_k, kept in O(r_k) per appended row from the bordered inverse's
// products), so
//   bonus_k >= |R_S x| / sqrt(C_k gersh_k),
// a lower bound on every arm's score from the same product. The arm with the largest value
// (first index on ties) is refined -- its bonus and score become exact (its own base whitens
// the query) -- until the largest is an exact score, or its lower bound is above every other
// arm's value: either way that arm's exact score is above (or, exact, >=) every other arm's
// exact score (each is below its bound), so the choice is exact LinUCB's, ties included. A decision costs one triangle and O(T d) per arm, plus O(r_k d) per
// refined arm on S and one triangle per refined arm on a base of its own (those whose bounds
// come close to the winner's; the winner too unless its lower bound clears them). The
// rounding of |R_S x| (float32 panels: 6 2^-24) is covered by a margin of 1e-12 (float64) or
// 1e-5 (float32) on the upper bound, and of 1e-9 or 1e-5 on the lower one (which rests on W
// and the bases as computed); the Cholesky certifications hold up to their backward error
// (n 2^-53 |L||L^T|). The terms of an arm left at its bounds report the upper one as its bonus
// (and the score from it): >= the exact bonus, equal for every refined arm -- the chosen one
// included unless its bounds alone decided. exact_bonus (the oracle, an option) refines every
// arm.
//
// Forgetting (set_discount(gamma, ridge), gamma < 1; python/mixllm/router.py defines it): an
// observation of arm k with weight w makes
//   A_k <- gamma A_k + w x x^T + rho e_j e_j^T,   b_k <- gamma b_k + w y x^T
// (rho = (1 - gamma) ridge d, j = n_obs_k mod d). Each arm carries a scale c_k > 0 with
//   A_k = c_k (G_k + U_k^T U_k),   b_k = c_k b~_k          (b the stored b~; c_k = 1 without)
// so that a discount is c_k <- gamma c_k and the two rows enter as sqrt(w / c_k) x (targets
// sqrt(w / c_k) y) and sqrt(rho / c_k) e_j (targets 0), c_k the scale after the discount:
// O(1) more per update besides the second row. theta_k = A_k^{-1} b_k does not see the common
// scale; the bonus is sqrt(quad / c_k) with quad = x^T (G_k + U_k^T U_k)^{-1} x as above. Every
// bound scales alike: A_k >= c_k floor_k S and A_k <= c_k C_k gersh_k S, so the decisions use
// floor_k c_k and C_k c_k where they used floor_k and C_k (and c_k for an arm on S itself).
// Renormalisation: rows grow as c_k^{-1/2} while c_k decays, so every fold writes the new base
// as p (G + U^T U) with p = 4^m the power of 4 at or below the arm's scale at installation
// (c_k becomes c_k / p, in [1, 4)); the rows that stay corrections are multiplied by 2^m, b~ and
// the floor and ceiling by p. Scaling by powers of two is exact, so a renormalisation changes
// no value: a background fold computes G + U^T U without the lock and is scaled as it is
// installed (at the update fixed by the stream, so a restored copy renormalises as the original
// did). The Woodbury form's accuracy rests on the rows' sizes against the base's (C_k = I +
// W_k W_k^T conditions as |W_k|^2, which grows as 1 / c_k): at c_k = 2^-15 theta was off by
// 1e-4 relative in a test with gamma = 0.4, 2e-9 with the rule that follows. An update that
// would take c_k below kMinScale = 2^-8 folds the arm first, under the lock; between folds an
// arm takes at most max_rank / 2 observations, so with gamma >= 2^(-16 / max_rank) (0.89 at
// max_rank 96) that never happens. The floor kept through a fold keeps c_k floor_k (what the
// decisions use) as it was while the arm's real A_k does not decay on average, so with
// forgetting it is also certified again at the first fold after gamma^(observations since) <
// 1/2; a background fold is installed 2 max(1, max_rank / 4) rows later (as many
// observations as without forgetting); and with background folds off the fold runs under the
// lock (the order of observations matters to forgetting, so the row that reaches max_rank
// cannot wait outside it).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <algorithm>
#include <string>
#include <vector>

#include "mixllm/aligned.hpp"

namespace mixllm {

constexpr std::size_t kQuality = 0;
constexpr std::size_t kLogTokens = 1;
constexpr std::size_t kNumTerms = 6;  // quality, output_tokens, cost, bonus, penalty, score
constexpr double kMaxLogTokens = 20.0;
// The largest weighted squared norm w |x|^2 of an observed row: past it the entries of A, or
// their squares in a factorisation, come close to overflowing (_reference.MAX_ROW_NORM2).
constexpr double kMaxRowNorm2 = 1e150;
constexpr std::uint64_t kSkipNames = ~std::uint64_t{0};  // score(): the caller needs no names

struct ScoreParams {
    double inv_lam = 0.0;  // 1 / lam; 0 means quality only
    double alpha = 0.0;
    double beta = 0.0;
    double tau = 0.0;      // seconds; <= 0 or inf disables the penalty
};

// G and its inverse Cholesky factor. Immutable once built; shared between arms and clones.
struct Base {
    std::uint64_t id = 0;     // unique within the process (keys the query cache)
    double scalar = 0.0;      // > 0: G = scalar * I and R = I / sqrt(scalar); A and R empty
    std::vector<double> A;    // G, d x d
    std::vector<double> R;    // L^{-1}, packed lower triangle (packed_row), d(d+1)/2
    aligned_vector<double> P;  // the same R in the panel layout of the hot path (panel_offset)
    aligned_vector<float> P32; // P rounded to float32 (panels_to_f32): what a float32 pool's
                              // decisions read; derived from P whenever a base is built
};

struct ArmState {
    std::string name;
    std::shared_ptr<const Base> base;
    std::size_t rank = 0;
    std::vector<double> U;      // rank x d   correction rows: A = G + U^T U
    std::vector<double> W;      // rank x d   U R^T
    std::vector<double> Cinv;   // rank x rank (I + W W^T)^{-1}
    std::vector<double> b;      // T x d
    std::vector<double> beta;   // T x d      R b
    std::vector<double> omega;  // rank x T   W beta^T
    double input_price = 0.0, output_price = 0.0;  // USD per 1M tokens
    double wait = 0.0;                               // current waiting time, seconds
    std::uint64_t n_obs = 0;
    std::uint64_t since_refactor = 0;
    std::uint64_t fold_ticket = 0;  // nonzero while a fold of this arm runs outside the lock
    // Derived, for the decisions (never persisted; recomputed on restore):
    std::vector<double> theta;  // T x d   A^{-1} b, exact at every refactorisation and fold,
                                //         one recursive-least-squares step per row between
    double floor = 0.0;         // c > 0 with G >= c S (S the pool's reference base, certified),
                                // 0 when unknown: bonus <= |R_S x| / sqrt(c) (see above)
    std::uint64_t floor_ref = 0;  // id of the S that floor was certified against
    std::uint64_t floor_n = 0;    // n_obs when it was certified (a fold keeps it until n_obs
                                  // doubles: G only grows, so the floor stays valid)
    double ceil = 0.0;            // C with G <= C S (certified, or compounded from a certified
                                  // one at folds), 0 when unknown: with the Gershgorin bound
                                  // of the corrections, bonus >= |R_S x| / sqrt(C gersh(C_k))
    double ceil_cert = 0.0;       // the value last certified (a compounded ceil past 1.5 times
                                  // it is certified again)
    std::uint64_t ceil_ref = 0;   // id of the S that ceil bounds against
    std::vector<double> crow;     // rank: row sums of |I + W W^T| (Gershgorin: lambda_max(C_k)
                                  // <= max crow), kept as rows are appended
    double scale = 1.0;           // c > 0: A = c (G + U^T U), b = c (the stored b) (forgetting;
                                  // 1 without; persisted)
};

// One arm as dense matrices (inspection, persistence, the reference engine); O(d^3).
struct ArmView {
    std::string name;
    std::vector<double> A, Ainv, b, theta;
    double input_price = 0.0, output_price = 0.0, wait = 0.0;
    std::uint64_t n_obs = 0, since_refactor = 0;
    std::size_t rank = 0;
};

struct ScoreResult {
    std::vector<std::int64_t> choice;  // B
    std::vector<double> terms;         // B x K x kNumTerms, empty unless asked for
    std::vector<std::string> names;    // the pool's arms when the scores were taken (empty when
                                       // the caller's known_version was current)
    std::uint64_t version = 0;         // membership version those names belong to
};

struct PredictResult {
    std::vector<double> means;  // B x K x T
    std::vector<double> bonus;  // B x K
    std::vector<std::string> names;
};

// What the router reports for B queries (predict_many): each B x K in the names' order.
struct Prediction {
    std::vector<double> quality;        // q_k
    std::vector<double> output_tokens;  // len_k: expm1(clamp(theta_k[1] . z, 0, max_log_tokens))
    std::vector<double> bonus;          // bonus_k
    std::vector<std::string> names;
};

// The whole state, bases numbered: what persistence writes and reads back bit for bit.
struct Snapshot {
    std::vector<Base> bases;
    std::vector<ArmState> arms;        // base pointers unset; floor and floor_n kept
    std::vector<std::size_t> arm_base;  // index into bases, per arm
    // The reference base S (index into bases; it may be a base no arm uses any more), or
    // kNoReference: restore then takes the base most arms share and certifies every floor.
    static constexpr std::size_t kNoReference = ~std::size_t{0};
    std::size_t reference = kNoReference;
    double discount = 1.0, prior = 1.0;  // Pool::set_discount's gamma and ridge
};

// Arms are addressed by name, so that a concurrent add or remove can never make an index
// point at another LLM: every result carries the names it was computed for.
class Pool {
  public:
    // max_rank 0 picks clamp(dim / 4, 4, 128): past d/4 rows a correction costs as much per
    // decision as a quarter of the shared triangle, and folding stays amortised.
    Pool(std::size_t dim, std::size_t n_targets, std::size_t refactor_every,
         std::size_t max_rank = 0);

    std::size_t dim() const { return dim_; }
    std::size_t n_targets() const { return n_targets_; }
    std::size_t refactor_every() const { return refactor_every_; }
    std::size_t max_rank() const { return max_rank_; }
    std::size_t size() const;
    std::vector<std::string> names() const;
    std::uint64_t version() const;  // changes whenever an arm is added or removed

    // Opt-in reduced-precision scoring: with float32 on, score() and predict() whiten the
    // queries with the bases' float32 panels (P32; float64 products and sums), half the bytes
    // of the triangle a decision reads. Everything else (updates, folds, refactorisations,
    // snapshots, the query cache) stays float64: the float32 whitening never enters the state.
    void set_float32(bool on) { f32_.store(on, std::memory_order_relaxed); }
    bool float32() const { return f32_.load(std::memory_order_relaxed); }
    // The oracle: every arm's bonus computed exactly in every decision (no pruning by the
    // certified bound); the choices are the same either way, only the speed and the terms of
    // the arms pruning skips differ.
    void set_exact_bonus(bool on) { exact_.store(on, std::memory_order_relaxed); }
    bool exact_bonus() const { return exact_.load(std::memory_order_relaxed); }

    // Folds in the background (the default): the update that brings an arm to max_rank
    // appends its row as any other and hands the O(d^3) factorisation of the arm's rows to a
    // thread of its own, which installs the new base under the lock when it is ready (the rows
    // that came in meanwhile stay corrections on it); no update waits for a fold unless an arm
    // reaches 2 max_rank first. Off: the updating thread computes the fold itself, with the
    // lock released (the fold happens at the same update every time: tests of its cadence).
    void set_background_folds(bool on) { bg_.store(on, std::memory_order_relaxed); }
    // Forgetting of online observations (see above): gamma in (0, 1] (1: none) and the ridge
    // its pseudo-rows keep. std::invalid_argument, nothing changed, for a value out of range.
    void set_discount(double gamma, double ridge);
    double discount() const;
    double discount_prior() const;
    // The scale below which an update renormalises the arm first (see above).
    static constexpr double kMinScale = 0x1p-8;
    bool background_folds() const { return bg_.load(std::memory_order_relaxed); }
    // Blocks until no background fold of this pool runs (snapshot, clone and the destructor
    // call it first, so that a copy holds every fold started before it).
    void wait_folds() const;
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // A deep copy (bases are immutable and stay shared).
    std::unique_ptr<Pool> clone() const;
    Snapshot snapshot() const;
    static std::unique_ptr<Pool> from_snapshot(std::size_t dim, std::size_t n_targets,
                                               std::size_t refactor_every, std::size_t max_rank,
                                               Snapshot s);

    // New arm with A = ridge * I and prior mean theta0 (T x d; nullptr means zeros).
    void add_arm(const std::string& name, double ridge, const double* theta0, double input_price,
                 double output_price);
    // New arm from its exact statistics A (d x d) and b (T x d), factorised exactly.
    void add_arm_state(const std::string& name, const double* A, const double* b,
                       std::uint64_t n_obs, std::uint64_t since_refactor, double input_price,
                       double output_price);
    // Offline training of a new pool's arms from full-information data: Z (n x d) and Y
    // (n x K x T, NaN where arm k did not observe row i; a row counts where all T targets are
    // finite). The rows every arm observed form the shared base; each arm's other rows become
    // its corrections (or, past max_rank, a base of its own). The pool must be empty.
    void fit(const std::vector<std::string>& names, const std::vector<double>& input_prices,
             const std::vector<double>& output_prices, double ridge, const double* Z,
             std::size_t n, const double* Y);
    // The same as the router has it (model.hpp): X (n x (dim - 1)) and the intercept, or
    // (n x dim) without; quality and output_tokens (n x K, names' order, NaN = not observed),
    // the targets quality and log1p(output_tokens). Checks everything before any change.
    void fit_observed(const std::vector<std::string>& names,
                      const std::vector<double>& input_prices,
                      const std::vector<double>& output_prices, double ridge, const double* X,
                      std::size_t n, bool intercept, const double* quality,
                      const double* output_tokens);
    void remove_arm(const std::string& name);
    void set_prices(const std::string& name, double input_price, double output_price);
    void set_wait(const std::string& name, double seconds);

    // One observation with weight w > 0 (x: d, y: T): A += w x x^T, b += w x y^T, by appending
    // the row sqrt(w) x. Reuses R x from a recent decision on the same x (see the cache).
    void update(const std::string& name, const double* x, const double* y, double weight = 1.0);
    // One observation as the router has it (model.hpp): x of dim entries, or dim - 1 and the
    // intercept; quality and output tokens; weight > 0. Checks everything before any change.
    void observe(const std::string& name, const double* x, bool intercept, double quality,
                 double output_tokens, double weight);
    // n observations at once (X: n x d, Y: n x T): exact, followed by a refactorisation.
    void update_batch(const std::string& name, const double* X, const double* Y, std::size_t n);
    // n observations as the router has them (X, quality, output_tokens as in fit_observed):
    // each arm names[k] takes update_batch over the rows where it observed both, in order.
    // Checks everything before any change; a failure of one arm's batch keeps the arms before.
    void observe_many(const std::vector<std::string>& names, const double* X, std::size_t n,
                      bool intercept, const double* quality, const double* output_tokens);
    // Exact re-anchoring of one arm's derived state, or of every arm's.
    void refactor(const std::string& name);
    void refactor_all();

    PredictResult predict(const double* X, std::size_t B) const;
    // predict for B queries as the router has them (X as in fit_observed), the length
    // target turned into output tokens (model.hpp).
    Prediction predict_many(const double* X, std::size_t B, bool intercept) const;
    // Choices (and, with_terms, the six terms) for B queries. names is filled unless
    // known_version is the pool's current membership version (a caller's memo of them) or
    // kSkipNames; versions start at 1, so 0 always asks for them.
    ScoreResult score(const double* X, std::size_t B, const double* in_tokens,
                      const ScoreParams& p, bool with_terms, std::uint64_t known_version = 0) const;
    // The same into a caller's result (its vectors' capacity reused: no allocation per call).
    void score_into(ScoreResult& out, const double* X, std::size_t B, const double* in_tokens,
                    const ScoreParams& p, bool with_terms, std::uint64_t known_version = 0) const;
    // Decisions as the router asks for them (model.hpp): B queries X as in fit_observed, the
    // input tokens one per query or one for all (n_tokens 1), finite and >= 0; checked (name
    // names X in the messages), then score_into.
    void route_into(ScoreResult& out, const double* X, std::size_t B, bool intercept,
                    const double* in_tokens, std::size_t n_tokens, const ScoreParams& p,
                    bool with_terms, std::uint64_t known_version, const char* name) const;

    ArmView arm(const std::string& name) const;
    std::vector<double> theta(const std::string& name) const;  // T x d
    std::vector<std::uint64_t> n_obs() const;                   // pool order

  private:
    struct CacheEntry {
        std::uint64_t base_id = 0;
        std::vector<double> x, v;
    };

    std::size_t index_of(const std::string& name) const;  // caller holds the lock
    // The arm's floor against the reference base (arm::certify_floor); caller holds the lock
    // or owns s. refloor: after a fold (the base only grew), the old floor is kept until the
    // arm's observations double since it was certified, then certified again.
    void certify(ArmState& s) const;
    void refloor(ArmState& s, double old_floor) const;
    // The arm's ceiling against the reference base, certified again (arm::certify_ceiling)
    // when unknown, against another reference, or compounded past kCeilSlack times the value
    // last certified; caller holds the lock or owns s.
    void receil(ArmState& s) const;
    static constexpr double kCeilSlack = 1.5;
    bool ceil_due(const ArmState& s) const {
        return !reference_ || s.ceil_ref != reference_->id || !(s.ceil > 0.0) ||
               s.ceil > kCeilSlack * s.ceil_cert;
    }
    bool floor_due(const ArmState& s) const {
        return !reference_ || s.floor_ref != reference_->id || s.floor <= 0.0 ||
               s.n_obs + 1 >= 2 * s.floor_n || floor_decayed(s.n_obs, s.floor_n);
    }
    // With forgetting, c floor (the bound the decisions use; a renormalisation leaves it as
    // it is) decays as gamma per observation against the arm's real A: certified again once
    // it has halved since the floor was certified, gamma^(n - floor_n) < 1/2.
    bool floor_decayed(std::uint64_t n, std::uint64_t floor_n) const {
        return discount_ < 1.0 && n > floor_n &&
               std::pow(discount_, static_cast<double>(n - floor_n)) < 0.5;
    }
    // Corrections an arm may hold: max_rank, plus as many again while its fold runs unlocked.
    std::size_t rank_cap() const { return 2 * max_rank_; }
    struct FoldJob;
    void fold_prepare(ArmState& s, FoldJob& job, std::size_t r0) const;
    void finish_fold(ArmState& s);
    // Rows appended between a background fold's start and its installation.
    // With forgetting an observation is two rows: the lag doubles, so that a fold has as many
    // observations' time to finish.
    std::size_t fold_lag() const {
        return std::max<std::size_t>(1, max_rank_ / 4) * (discount_ < 1.0 ? 2 : 1);
    }
    void fold_compute(FoldJob& job) const;
    bool fold_install(const FoldJob& job, const double* u, const double* ys);
    void schedule_fold(ArmState& s);
    bool fold_unlocked(std::unique_lock<std::shared_mutex>& lock, const std::string& name,
                       const double* u, const double* wu, const double* ys);
    void update_impl(const std::string& name, const double* x, const double* y, double weight,
                     bool fold_unlocked_ok);
    // Appends the row sqrt(weight / c) x (targets sqrt(weight / c) y; c = the arm's scale times
    // gamma), v = R x on the arm's base (or nullptr), folding a copy first when the bordered
    // inverse would not be accurate; caller holds the lock.
    void append_scaled(ArmState& a, const double* x, const double* v, const double* y,
                       double weight, double gamma) const;
    std::shared_ptr<const Base> scalar_base(double ridge);  // caller holds the lock
    bool cache_get(std::uint64_t base_id, const double* x, double* v) const;
    void cache_put(std::uint64_t base_id, const double* x, const double* v) const;
    template <typename F>
    void evaluate(const double* X, std::size_t B, F&& per_arm_row) const;

    std::size_t dim_, n_targets_, refactor_every_, max_rank_;
    std::vector<std::unique_ptr<ArmState>> arms_;
    std::shared_ptr<const Base> reference_;  // S: the base decisions whiten every query with
    std::atomic<bool> exact_{false};
    std::uint64_t version_ = 0;
    std::atomic<bool> f32_{false};
    std::atomic<bool> bg_{true};
    double discount_ = 1.0, prior_ = 1.0;  // under mu_
    mutable std::shared_mutex mu_;
    // Background folds: how many run, in which process (a forked child has none of them).
    mutable std::mutex fold_mu_;
    mutable std::condition_variable fold_cv_;
    std::size_t folds_running_ = 0;
    long fold_pid_ = 0;
    std::vector<std::shared_ptr<FoldJob>> jobs_;  // scheduled, not yet installed
    // Recent (base, x) -> R x, so that the update following a decision on the same query
    // skips the triangular product. Guarded by its own mutex: readers fill it.
    static constexpr std::size_t kCacheSize = 8;
    mutable std::mutex cache_mu_;
    mutable std::vector<CacheEntry> cache_;
    mutable std::size_t cache_next_ = 0;
};

}  // namespace mixllm
