// The model's semantics at the edge of the core (model.hpp).
#include "mixllm/model.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "mixllm/kernels.hpp"
#include "mixllm/pool.hpp"

namespace mixllm {

std::string py_float(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    std::ostringstream os;
    os.precision(17);
    os << v;
    std::string s = os.str();
    // The shortest representation that reads back, as Python prints it.
    for (int p = 1; p <= 17; ++p) {
        std::ostringstream t;
        t.precision(p);
        t << v;
        if (std::stod(t.str()) == v) {
            s = t.str();
            break;
        }
    }
    if (s.find_first_of(".e") == std::string::npos) s += ".0";
    return s;
}

void features(const double* x, std::size_t n, bool intercept, double* z, const char* name) {
    // One vectorised pass: a NaN or inf entry makes the squared norm non-finite, and so does a
    // finite x whose squared norm overflows; the scan for the culprit only on failure.
    if (!std::isfinite(kernels().dot(x, x, n))) {
        for (std::size_t i = 0; i < n; ++i)
            if (!std::isfinite(x[i]))
                throw std::invalid_argument(std::string(name) + " contains NaN or inf");
        throw std::invalid_argument(std::string(name) + " is too large: its squared norm overflows");
    }
    if (z != x) std::copy(x, x + n, z);
    if (intercept) z[n] = 1.0;
}

void targets(double quality, double output_tokens, double* y) {
    if (!std::isfinite(quality))
        throw std::invalid_argument("quality must be finite, got " + py_float(quality));
    if (!std::isfinite(output_tokens))
        throw std::invalid_argument("output_tokens must be finite, got " + py_float(output_tokens));
    if (output_tokens < 0.0)
        throw std::invalid_argument("output_tokens must be >= 0.0, got " + py_float(output_tokens));
    y[kQuality] = quality;
    y[kLogTokens] = std::log1p(output_tokens);
}

void check_weight(double weight) {
    if (!std::isfinite(weight))
        throw std::invalid_argument("weight must be finite, got " + py_float(weight));
    if (!(weight > 0.0)) throw std::invalid_argument("weight must be > 0.0, got " + py_float(weight));
}

}  // namespace mixllm
