// The model's semantics at the edge of the core: what a query and an observation mean.
//   z = x, or x with a trailing 1 when the router fits an intercept   (features)
//   y = (quality, log1p(output_tokens))                               (targets, kQuality and
//                                                                      kLogTokens of pool.hpp)
//   output tokens predicted = expm1(clamp(theta[kLogTokens] . z, 0, kMaxLogTokens))
// Every call of the router takes raw queries and raw observations and goes through these:
// one query (Pool::route_one's binding, Pool::observe) or a batch (features_rows,
// targets_rows; Pool::fit_observed, observe_many, predict_many), so no layer above the core
// appends the intercept, takes the log or undoes it. They check their inputs and throw
// std::invalid_argument with the message the Python layer shows (numbers as Python's float
// repr), before anything changes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "mixllm/pool.hpp"

namespace mixllm {

// z (n + intercept entries) from x (n entries): every entry finite and the squared norm too
// (a finite x whose squared norm overflows would make the bonus inf and the scores NaN).
// `name` names x in the messages.
void features(const double* x, std::size_t n, bool intercept, double* z, const char* name);
// features for each of n rows of m entries (X row-major): Z (n x (m + intercept)), written
// into buf with the intercept, X itself without (no copy). Returns Z.
const double* features_rows(const double* X, std::size_t n, std::size_t m, bool intercept,
                            std::vector<double>& buf, const char* name);
// y[0] = quality, y[1] = log1p(output_tokens); quality finite, output_tokens finite and >= 0.
void targets(double quality, double output_tokens, double* y);
// targets for n rows of K arms (quality and output_tokens n x K, NaN = not observed): Y
// (n x K x 2), NaN where an entry was not observed; no inf, output_tokens >= 0 where observed.
void targets_rows(const double* quality, const double* output_tokens, std::size_t n,
                  std::size_t K, std::vector<double>& Y);
// The output tokens a predicted log1p length stands for (NaN stays NaN).
inline double predicted_tokens(double log_tokens) {
    return std::expm1(std::clamp(log_tokens, 0.0, kMaxLogTokens));
}
// weight finite and > 0.
void check_weight(double weight);
// A number as Python's repr of a float ("1.0", "nan", "inf", "1e+300").
std::string py_float(double v);

}  // namespace mixllm
