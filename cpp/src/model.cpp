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

const double* features_rows(const double* X, std::size_t n, std::size_t m, bool intercept,
                            std::vector<double>& buf, const char* name) {
    const std::size_t d = m + (intercept ? 1 : 0);
    if (intercept) buf.resize(n * d);
    for (std::size_t i = 0; i < n; ++i) {
        const double* x = X + i * m;
        // Without the intercept z is x itself, which features() only reads.
        features(x, m, intercept, intercept ? buf.data() + i * d : const_cast<double*>(x), name);
    }
    return intercept ? buf.data() : X;
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

void targets_rows(const double* quality, const double* output_tokens, std::size_t n,
                  std::size_t K, std::vector<double>& Y) {
    const std::size_t m = n * K;
    for (std::size_t i = 0; i < m; ++i)
        if (std::isinf(quality[i]) || std::isinf(output_tokens[i]))
            throw std::invalid_argument(
                "quality and output_tokens must not contain inf (NaN = not observed)");
    for (std::size_t i = 0; i < m; ++i)
        if (output_tokens[i] < 0.0) throw std::invalid_argument("output_tokens must be >= 0");
    Y.resize(2 * m);
    for (std::size_t i = 0; i < m; ++i) {
        Y[2 * i + kQuality] = quality[i];
        Y[2 * i + kLogTokens] = std::log1p(output_tokens[i]);  // NaN stays NaN: not observed
    }
}

void check_weight(double weight) {
    if (!std::isfinite(weight))
        throw std::invalid_argument("weight must be finite, got " + py_float(weight));
    if (!(weight > 0.0)) throw std::invalid_argument("weight must be > 0.0, got " + py_float(weight));
}

// ------------------------------------------------------------- the router's batch calls
// Raw queries and observations in, through the semantics above, then the pool's own fit,
// update_batch and predict (pool.hpp).

namespace {

void need_router_pool(std::size_t n_targets, const char* what) {
    if (n_targets != 2) throw std::invalid_argument(std::string(what) + " needs a 2-target pool");
}

std::size_t query_width(std::size_t dim, bool intercept) { return intercept ? dim - 1 : dim; }

}  // namespace

void Pool::fit_observed(const std::vector<std::string>& names,
                        const std::vector<double>& input_prices,
                        const std::vector<double>& output_prices, double ridge, const double* X,
                        std::size_t n, bool intercept, const double* quality,
                        const double* output_tokens) {
    need_router_pool(n_targets_, "fit_observed");
    std::vector<double> buf, Y;
    const double* Z = features_rows(X, n, query_width(dim_, intercept), intercept, buf, "X");
    targets_rows(quality, output_tokens, n, names.size(), Y);
    fit(names, input_prices, output_prices, ridge, Z, n, Y.data());
}

void Pool::observe_many(const std::vector<std::string>& names, const double* X, std::size_t n,
                        bool intercept, const double* quality, const double* output_tokens) {
    need_router_pool(n_targets_, "observe_many");
    const std::size_t d = dim_, K = names.size();
    std::vector<double> buf, Y;
    const double* Z = features_rows(X, n, query_width(d, intercept), intercept, buf, "X");
    targets_rows(quality, output_tokens, n, K, Y);
    // Each arm learns from the rows it observed (both targets), in one exact batch.
    std::vector<double> Zk, Yk;
    for (std::size_t k = 0; k < K; ++k) {
        Zk.clear(), Yk.clear();
        for (std::size_t i = 0; i < n; ++i) {
            const double* y = Y.data() + (i * K + k) * 2;
            if (!std::isfinite(y[kQuality]) || !std::isfinite(y[kLogTokens])) continue;
            Zk.insert(Zk.end(), Z + i * d, Z + (i + 1) * d);
            Yk.insert(Yk.end(), y, y + 2);
        }
        if (!Yk.empty()) update_batch(names[k], Zk.data(), Yk.data(), Yk.size() / 2);
    }
}

void Pool::route_into(ScoreResult& out, const double* X, std::size_t B, bool intercept,
                      const double* in_tokens, std::size_t n_tokens, const ScoreParams& p,
                      bool with_terms, std::uint64_t known_version, const char* name) const {
    if (n_tokens != 1 && n_tokens != B)
        throw std::invalid_argument("input_tokens: one count, or one per query");
    for (std::size_t i = 0; i < n_tokens; ++i)
        if (!std::isfinite(in_tokens[i]) || in_tokens[i] < 0.0)
            throw std::invalid_argument("input_tokens must be finite and >= 0");
    thread_local std::vector<double> buf, tok;  // no allocation per decision once warm
    const double* Z = features_rows(X, B, query_width(dim_, intercept), intercept, buf, name);
    if (n_tokens != B) {
        tok.assign(B, in_tokens[0]);
        in_tokens = tok.data();
    }
    score_into(out, Z, B, in_tokens, p, with_terms, known_version);
}

Prediction Pool::predict_many(const double* X, std::size_t B, bool intercept) const {
    need_router_pool(n_targets_, "predict_many");
    std::vector<double> buf;
    const double* Z = features_rows(X, B, query_width(dim_, intercept), intercept, buf, "X");
    PredictResult r = predict(Z, B);
    Prediction out;
    const std::size_t m = r.bonus.size();
    out.quality.resize(m);
    out.output_tokens.resize(m);
    for (std::size_t i = 0; i < m; ++i) {
        out.quality[i] = r.means[2 * i + kQuality];
        out.output_tokens[i] = predicted_tokens(r.means[2 * i + kLogTokens]);
    }
    out.bonus = std::move(r.bonus);
    out.names = std::move(r.names);
    return out;
}

}  // namespace mixllm
