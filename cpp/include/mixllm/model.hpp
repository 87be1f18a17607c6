// The model's semantics at the edge of the core: what a query and an observation mean.
//   z = x, or x with a trailing 1 when the router fits an intercept   (features)
//   y = (quality, log1p(output_tokens))                               (targets, kQuality and
//                                                                      kLogTokens of pool.hpp)
// Both check their inputs and throw std::invalid_argument with the message the Python layer
// shows (numbers as Python's float repr), before anything changes.
#pragma once

#include <cstddef>
#include <string>

namespace mixllm {

// z (n + intercept entries) from x (n entries): every entry finite and the squared norm too
// (a finite x whose squared norm overflows would make the bonus inf and the scores NaN).
// `name` names x in the messages.
void features(const double* x, std::size_t n, bool intercept, double* z, const char* name);
// y[0] = quality, y[1] = log1p(output_tokens); quality finite, output_tokens finite and >= 0.
void targets(double quality, double output_tokens, double* y);
// weight finite and > 0.
void check_weight(double weight);
// A number as Python's repr of a float ("1.0", "nan", "inf", "1e+300").
std::string py_float(double v);

}  // namespace mixllm
