// mixllm._core.Pool: the routing state. Arrays are converted and their shapes checked here,
// with the GIL held; everything else (the model's semantics, the checks of values) is the
// core's, run without the GIL, the Pool's own reader/writer lock ordering concurrent calls.
#include <algorithm>
#include <stdexcept>

#include "common.hpp"
#include "mixllm/pool.hpp"

using mixllm::Pool;

namespace {

template <typename F>
auto translate(F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::out_of_range& e) {
        throw py::key_error(e.what());
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    } catch (const std::runtime_error& e) {
        throw py::value_error(e.what());
    }
}

std::size_t rows_of(const darray& X, std::size_t d, const char* name) {
    if (X.ndim() != 2 || static_cast<std::size_t>(X.shape(1)) != d)
        throw py::value_error(std::string(name) + " must be a 2-d array with " + std::to_string(d) +
                              " columns");
    return static_cast<std::size_t>(X.shape(0));
}

darray to_array(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
    darray a(shape);
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

// The scalars an arm carries, for an ArmView or an ArmState alike.
template <typename Arm>
void put_scalars(py::dict& out, const Arm& a) {
    out["input_price"] = a.input_price;
    out["output_price"] = a.output_price;
    out["wait"] = a.wait;
    out["n_obs"] = a.n_obs;
    out["since_refactor"] = a.since_refactor;
    out["rank"] = a.rank;
}

py::dict arm_dict(const mixllm::ArmView& s, std::size_t d, std::size_t T) {
    const auto sd = static_cast<py::ssize_t>(d), sT = static_cast<py::ssize_t>(T);
    py::dict out;
    out["name"] = s.name;
    out["A"] = to_array(s.A, {sd, sd});
    out["Ainv"] = to_array(s.Ainv, {sd, sd});
    out["b"] = to_array(s.b, {sT, sd});
    out["theta"] = to_array(s.theta, {sT, sd});
    put_scalars(out, s);
    return out;
}

// The shape of a query from Python: (dim,), or (dim - 1,) when the router fits an intercept
// (the message matches the Python layer's). Returns the array as float64.
darray query_array(const py::array& x_in, const Pool& p, bool intercept, const char* name) {
    const std::size_t want = intercept ? p.dim() - 1 : p.dim();
    darray x = darray::ensure(x_in);
    if (!x) throw py::value_error(std::string(name) + " is not a numeric array");
    if (x.ndim() != 1 || static_cast<std::size_t>(x.shape(0)) != want) {
        std::string got = "(";
        for (py::ssize_t j = 0; j < x.ndim(); ++j) got += std::to_string(x.shape(j)) + ",";
        if (x.ndim() != 1 && x.ndim() != 0) got.pop_back();
        got += ")";
        throw py::value_error(std::string(name) + " must have shape (" + std::to_string(want) +
                              ",), got " + got);
    }
    return x;
}

// Python's repr of an array's shape: "(5,)", "(2, 3)", "()".
std::string shape_repr(const py::array& a) {
    std::string out = "(";
    for (py::ssize_t j = 0; j < a.ndim(); ++j) out += (j ? ", " : "") + std::to_string(a.shape(j));
    return out + (a.ndim() == 1 ? ",)" : ")");
}

// The rows of a batch of queries from Python: X of shape (B, dim), or (B, dim - 1) when the
// router fits an intercept (the message matches the Python layer's). Returns B.
std::size_t query_rows(const darray& X, const Pool& p, bool intercept, const char* name) {
    const std::size_t want = intercept ? p.dim() - 1 : p.dim();
    if (X.ndim() != 2 || static_cast<std::size_t>(X.shape(1)) != want)
        throw py::value_error(std::string(name) + " must have shape (n, " + std::to_string(want) +
                              "), got " + shape_repr(X));
    return static_cast<std::size_t>(X.shape(0));
}

// The rows of a batch of observations: X as query_rows, quality and output_tokens (n, K) in
// the order of the names passed with them. Returns n.
std::size_t observation_rows(const darray& X, const darray& quality, const darray& output_tokens,
                             const Pool& p, const std::vector<std::string>& names, bool intercept) {
    const std::size_t n = query_rows(X, p, intercept, "X");
    require_shape(quality, {n, names.size()}, "quality");
    require_shape(output_tokens, {n, names.size()}, "output_tokens");
    return n;
}

py::dict snapshot_dict(const mixllm::Snapshot& s, std::size_t d, std::size_t T) {
    const auto sd = static_cast<py::ssize_t>(d), sT = static_cast<py::ssize_t>(T);
    py::list bases, arms;
    for (const auto& b : s.bases) {
        py::dict e;
        e["scalar"] = b.scalar;
        e["A"] = to_array(b.A, {static_cast<py::ssize_t>(b.A.size())});
        e["R"] = to_array(b.R, {static_cast<py::ssize_t>(b.R.size())});
        bases.append(e);
    }
    for (std::size_t k = 0; k < s.arms.size(); ++k) {
        const auto& a = s.arms[k];
        const auto r = static_cast<py::ssize_t>(a.rank);
        py::dict e;
        e["name"] = a.name;
        e["base"] = s.arm_base[k];
        e["U"] = to_array(a.U, {r, sd});
        e["W"] = to_array(a.W, {r, sd});
        e["Cinv"] = to_array(a.Cinv, {r, r});
        e["b"] = to_array(a.b, {sT, sd});
        e["beta"] = to_array(a.beta, {sT, sd});
        e["omega"] = to_array(a.omega, {r, sT});
        put_scalars(e, a);
        e["theta"] = to_array(a.theta, {sT, sd});
        e["floor"] = a.floor;
        e["floor_n"] = a.floor_n;
        e["ceil"] = a.ceil;
        e["ceil_cert"] = a.ceil_cert;
        e["scale"] = a.scale;
        arms.append(e);
    }
    py::dict out;
    out["bases"] = bases;
    out["arms"] = arms;
    out["reference"] = s.reference == mixllm::Snapshot::kNoReference
                           ? py::object(py::none())
                           : py::object(py::int_(s.reference));
    out["discount"] = s.discount;
    out["prior"] = s.prior;
    return out;
}

std::vector<double> vec(const py::handle& h, const char* what) {
    darray a = darray::ensure(h);
    if (!a) throw py::value_error(std::string("snapshot: ") + what + " is not an array");
    return std::vector<double>(a.data(), a.data() + a.size());
}

mixllm::Snapshot snapshot_from(const py::dict& d) {
    mixllm::Snapshot s;
    for (const auto& h : d["bases"].cast<py::list>()) {
        auto e = h.cast<py::dict>();
        mixllm::Base b;
        b.scalar = e["scalar"].cast<double>();
        b.A = vec(e["A"], "A");
        b.R = vec(e["R"], "R");
        s.bases.push_back(std::move(b));
    }
    for (const auto& h : d["arms"].cast<py::list>()) {
        auto e = h.cast<py::dict>();
        mixllm::ArmState a;
        a.name = e["name"].cast<std::string>();
        s.arm_base.push_back(e["base"].cast<std::size_t>());
        a.rank = e["rank"].cast<std::size_t>();
        a.U = vec(e["U"], "U");
        a.W = vec(e["W"], "W");
        a.Cinv = vec(e["Cinv"], "Cinv");
        a.b = vec(e["b"], "b");
        a.beta = vec(e["beta"], "beta");
        a.omega = vec(e["omega"], "omega");
        a.input_price = e["input_price"].cast<double>();
        a.output_price = e["output_price"].cast<double>();
        a.wait = e["wait"].cast<double>();
        a.n_obs = e["n_obs"].cast<std::uint64_t>();
        a.since_refactor = e["since_refactor"].cast<std::uint64_t>();
        if (e.contains("theta")) a.theta = vec(e["theta"], "theta");
        if (e.contains("floor")) a.floor = e["floor"].cast<double>();
        if (e.contains("floor_n")) a.floor_n = e["floor_n"].cast<std::uint64_t>();
        if (e.contains("ceil")) a.ceil = e["ceil"].cast<double>();
        if (e.contains("ceil_cert")) a.ceil_cert = e["ceil_cert"].cast<double>();
        if (e.contains("scale")) a.scale = e["scale"].cast<double>();
        s.arms.push_back(std::move(a));
    }
    if (d.contains("reference") && !d["reference"].is_none())
        s.reference = d["reference"].cast<std::size_t>();
    if (d.contains("discount")) s.discount = d["discount"].cast<double>();
    if (d.contains("prior")) s.prior = d["prior"].cast<double>();
    return s;
}

}  // namespace

void bind_pool(py::module_& m) {
    m.attr("N_TERMS") = mixllm::kNumTerms;
    m.attr("MAX_LOG_TOKENS") = mixllm::kMaxLogTokens;
    py::class_<Pool>(m, "Pool", py::dynamic_attr(),
                     "Per-LLM online ridge state and MixLLM scoring (see pool.hpp).")
        .def(py::init([](std::size_t dim, std::size_t n_targets, std::size_t refactor_every,
                         std::size_t max_rank) {
                 return translate([&] { return new Pool(dim, n_targets, refactor_every, max_rank); });
             }),
             py::arg("dim"), py::arg("n_targets") = 2, py::arg("refactor_every") = 4096,
             py::arg("max_rank") = 0)
        .def_property_readonly("dim", &Pool::dim)
        .def_property_readonly("n_targets", &Pool::n_targets)
        .def_property_readonly("refactor_every", &Pool::refactor_every)
        .def_property_readonly("max_rank", &Pool::max_rank)
        .def_property("float32", &Pool::float32, &Pool::set_float32,
                      "Opt-in reduced-precision scoring: score/predict whiten the queries with "
                      "the bases' float32 triangles (float64 sums); the state stays float64.")
        .def_property("exact_bonus", &Pool::exact_bonus, &Pool::set_exact_bonus,
                      "The oracle: every LLM's bonus computed exactly in every decision. Off "
                      "(the default), an LLM on a base of its own keeps its certified upper "
                      "bound unless it could win (the choices are the same; pool.hpp).")
        .def_property("background_folds", &Pool::background_folds, &Pool::set_background_folds,
                      "Folds computed by a thread of their own (the default; pool.hpp); off, "
                      "the update that reaches max_rank computes its fold.")
        .def("set_discount",
             [](Pool& p, double gamma, double ridge) {
                 translate([&] { p.set_discount(gamma, ridge); });
             },
             py::arg("gamma"), py::arg("ridge"),
             "Forgetting of online observations: gamma in (0, 1] (1: none), the ridge its "
             "pseudo-rows keep (pool.hpp; mixllm.router's docstring). ValueError, nothing "
             "changed, for a value out of range.")
        .def_property_readonly("discount", &Pool::discount,
                               "The forgetting factor of online observations (1: none).")
        .def("wait_folds", &Pool::wait_folds, py::call_guard<py::gil_scoped_release>(),
             "Block until no background fold of this pool runs.")
        .def("__len__", &Pool::size)
        .def("names", &Pool::names)
        .def("version", &Pool::version,
             "Membership version: changes whenever an LLM is added or removed.")
        .def("n_obs", &Pool::n_obs, "Observations per LLM, in pool order.")
        .def("copy", [](const Pool& p) { return p.clone(); }, "A deep copy.")
        .def("add_arm",
             [](Pool& p, const std::string& name, double ridge, const darray& theta0,
                double in_price, double out_price) {
                 require_shape(theta0, {p.n_targets(), p.dim()}, "theta0");
                 py::gil_scoped_release nogil;
                 translate([&] { p.add_arm(name, ridge, theta0.data(), in_price, out_price); });
             },
             py::arg("name"), py::arg("ridge"), py::arg("theta0"), py::arg("input_price"),
             py::arg("output_price"))
        .def("add_arm_state",
             [](Pool& p, const std::string& name, const darray& A, const py::object& Ainv,
                const darray& b, const py::object& theta, std::uint64_t n_obs,
                std::uint64_t since, double in_price, double out_price) {
                 // The slots keep the reference engine's signature (it resumes from its own
                 // saved inverse); this core factorises A itself, so a value there would be
                 // ignored: refused instead.
                 if (!Ainv.is_none() || !theta.is_none())
                     throw py::value_error("add_arm_state: the native core computes Ainv and "
                                           "theta exactly from A and b; pass None for both");
                 const std::size_t d = p.dim(), T = p.n_targets();
                 require_shape(A, {d, d}, "A");
                 require_shape(b, {T, d}, "b");
                 py::gil_scoped_release nogil;
                 translate([&] {
                     p.add_arm_state(name, A.data(), b.data(), n_obs, since, in_price, out_price);
                 });
             },
             py::arg("name"), py::arg("A"), py::arg("Ainv"), py::arg("b"), py::arg("theta"),
             py::arg("n_obs"), py::arg("since_refactor"), py::arg("input_price"),
             py::arg("output_price"),
             "New arm from its exact statistics A and b, factorised exactly. Ainv and theta "
             "must be None (ValueError otherwise): the native core derives both from A and b.")
        .def("fit",
             [](Pool& p, const std::vector<std::string>& names, const std::vector<double>& pin,
                const std::vector<double>& pout, double ridge, const darray& Z, const darray& Y) {
                 const std::size_t n = rows_of(Z, p.dim(), "Z");
                 require_shape(Y, {n, names.size(), p.n_targets()}, "Y");
                 py::gil_scoped_release nogil;
                 translate([&] { p.fit(names, pin, pout, ridge, Z.data(), n, Y.data()); });
             },
             py::arg("names"), py::arg("input_prices"), py::arg("output_prices"), py::arg("ridge"),
             py::arg("Z"), py::arg("Y"))
        .def("fit_observed",
             [](Pool& p, const std::vector<std::string>& names, const std::vector<double>& pin,
                const std::vector<double>& pout, double ridge, const darray& X,
                const darray& quality, const darray& output_tokens, bool intercept) {
                 const std::size_t n =
                     observation_rows(X, quality, output_tokens, p, names, intercept);
                 py::gil_scoped_release nogil;
                 translate([&] {
                     p.fit_observed(names, pin, pout, ridge, X.data(), n, intercept,
                                    quality.data(), output_tokens.data());
                 });
             },
             py::arg("names"), py::arg("input_prices"), py::arg("output_prices"), py::arg("ridge"),
             py::arg("X"), py::arg("quality"), py::arg("output_tokens"), py::arg("intercept"),
             "The Router's fit: raw queries X (n, dim - intercept) and per-LLM quality and "
             "output tokens (n, K), NaN = not observed; the intercept and log1p in the core.")
        .def("remove_arm",
             [](Pool& p, const std::string& name) { translate([&] { p.remove_arm(name); }); },
             py::arg("name"))
        .def("set_prices",
             [](Pool& p, const std::string& name, double in_price, double out_price) {
                 translate([&] { p.set_prices(name, in_price, out_price); });
             },
             py::arg("name"), py::arg("input_price"), py::arg("output_price"))
        .def("set_wait",
             [](Pool& p, const std::string& name, double seconds) {
                 translate([&] { p.set_wait(name, seconds); });
             },
             py::arg("name"), py::arg("seconds"))
        .def("update",
             [](Pool& p, const std::string& name, const darray& x, const darray& y, double weight) {
                 require_shape(x, {p.dim()}, "x");
                 require_shape(y, {p.n_targets()}, "y");
                 py::gil_scoped_release nogil;
                 translate([&] { p.update(name, x.data(), y.data(), weight); });
             },
             py::arg("name"), py::arg("x"), py::arg("y"), py::arg("weight") = 1.0)
        .def("observe",
             [](Pool& p, const std::string& name, const py::array& x, double quality,
                double output_tokens, double weight, bool intercept) {
                 // The Router's feedback; its semantics (intercept, log1p, checks) in the core.
                 const darray z = query_array(x, p, intercept, "x");
                 py::gil_scoped_release nogil;
                 translate([&] {
                     p.observe(name, z.data(), intercept, quality, output_tokens, weight);
                 });
             },
             py::arg("name"), py::arg("x"), py::arg("quality"), py::arg("output_tokens"),
             py::arg("weight"), py::arg("intercept"))
        .def("update_batch",
             [](Pool& p, const std::string& name, const darray& X, const darray& Y) {
                 const std::size_t n = rows_of(X, p.dim(), "X");
                 require_shape(Y, {n, p.n_targets()}, "Y");
                 py::gil_scoped_release nogil;
                 translate([&] { p.update_batch(name, X.data(), Y.data(), n); });
             },
             py::arg("name"), py::arg("X"), py::arg("Y"))
        .def("observe_many",
             [](Pool& p, const std::vector<std::string>& names, const darray& X,
                const darray& quality, const darray& output_tokens, bool intercept) {
                 const std::size_t n =
                     observation_rows(X, quality, output_tokens, p, names, intercept);
                 py::gil_scoped_release nogil;
                 translate([&] {
                     p.observe_many(names, X.data(), n, intercept, quality.data(),
                                    output_tokens.data());
                 });
             },
             py::arg("names"), py::arg("X"), py::arg("quality"), py::arg("output_tokens"),
             py::arg("intercept"),
             "The Router's partial_fit: as fit_observed, each LLM's observed rows added in one "
             "exact batch.")
        .def("refactor",
             [](Pool& p, std::optional<std::string> name) {
                 py::gil_scoped_release nogil;
                 translate([&] {
                     if (name) p.refactor(*name);
                     else p.refactor_all();
                 });
             },
             py::arg("name") = py::none())
        .def("predict",
             [](const Pool& p, const darray& X) {
                 const std::size_t B = rows_of(X, p.dim(), "X");
                 mixllm::PredictResult r;
                 {
                     py::gil_scoped_release nogil;
                     r = p.predict(X.data(), B);
                 }
                 const auto sB = static_cast<py::ssize_t>(B);
                 const auto sK = static_cast<py::ssize_t>(r.names.size());
                 const auto sT = static_cast<py::ssize_t>(p.n_targets());
                 return py::make_tuple(to_array(r.means, {sB, sK, sT}), to_array(r.bonus, {sB, sK}),
                                       r.names);
             },
             py::arg("X"))
        .def("predict_many",
             [](const Pool& p, const darray& X, bool intercept) {
                 const std::size_t B = query_rows(X, p, intercept, "X");
                 mixllm::Prediction r;
                 {
                     py::gil_scoped_release nogil;
                     r = translate([&] { return p.predict_many(X.data(), B, intercept); });
                 }
                 const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(B),
                                                      static_cast<py::ssize_t>(r.names.size())};
                 return py::make_tuple(to_array(r.quality, shape), to_array(r.output_tokens, shape),
                                       to_array(r.bonus, shape), r.names);
             },
             py::arg("X"), py::arg("intercept"),
             "The Router's predict: (quality, output_tokens, bonus), each (n, K), and the names.")
        .def("score",
             [](const Pool& p, const darray& X, const darray& in_tokens, double inv_lam,
                double alpha, double beta, double tau, bool with_terms) {
                 const std::size_t B = rows_of(X, p.dim(), "X");
                 require_shape(in_tokens, {B}, "input_tokens");
                 mixllm::ScoreResult r;
                 {
                     py::gil_scoped_release nogil;
                     r = translate([&] {
                         return p.score(X.data(), B, in_tokens.data(),
                                        mixllm::ScoreParams{inv_lam, alpha, beta, tau}, with_terms);
                     });
                 }
                 py::array_t<std::int64_t> choice(static_cast<py::ssize_t>(B));
                 std::copy(r.choice.begin(), r.choice.end(), choice.mutable_data());
                 py::object terms = py::none();
                 if (with_terms)
                     terms = to_array(r.terms, {static_cast<py::ssize_t>(B),
                                                static_cast<py::ssize_t>(r.names.size()),
                                                static_cast<py::ssize_t>(mixllm::kNumTerms)});
                 return py::make_tuple(choice, terms, r.names);
             },
             py::arg("X"), py::arg("input_tokens"), py::arg("inv_lam"), py::arg("alpha"),
             py::arg("beta"), py::arg("tau"), py::arg("with_terms") = false)
        .def("route_many",
             [](const Pool& p, const darray& X, const darray& in_tokens, double inv_lam,
                double alpha, double beta, double tau, bool intercept) {
                 // The Router's batch decision (its checks and the intercept in the core): tokens
                 // a number (0-d) or one per row; returns the choices.
                 thread_local mixllm::ScoreResult r;
                 const std::size_t B = query_rows(X, p, intercept, "X");
                 if (!(in_tokens.ndim() == 0 ||
                       (in_tokens.ndim() == 1 && static_cast<std::size_t>(in_tokens.shape(0)) == B)))
                     throw py::value_error("input_tokens must be a number or have shape (" +
                                           std::to_string(B) + ",), got " + shape_repr(in_tokens));
                 const std::size_t nt = in_tokens.ndim() == 0 ? 1 : B;
                 {
                     py::gil_scoped_release nogil;
                     translate([&] {
                         p.route_into(r, X.data(), B, intercept, in_tokens.data(), nt,
                                      mixllm::ScoreParams{inv_lam, alpha, beta, tau}, false,
                                      mixllm::kSkipNames, "X");
                     });
                 }
                 py::array_t<std::int64_t> choice(static_cast<py::ssize_t>(B));
                 std::copy(r.choice.begin(), r.choice.end(), choice.mutable_data());
                 return choice;
             },
             py::arg("X"), py::arg("input_tokens"), py::arg("inv_lam"), py::arg("alpha"),
             py::arg("beta"), py::arg("tau"), py::arg("intercept"))
        .def("route_one",
             [](py::object self, const py::array& x, double in_tokens, double inv_lam,
                double alpha, double beta, double tau, bool intercept) {
                 // The Router's single decision: the batch path with B = 1. Returns (llm,
                 // index, names, terms (6, K), read-only), the Decision's own tuple. The names
                 // tuple is memoised on the pool object for its membership version (set and
                 // read with the GIL held), so that a decision builds no strings.
                 const Pool& p = self.cast<const Pool&>();
                 thread_local mixllm::ScoreResult r;
                 const darray xa = query_array(x, p, intercept, "x");
                 py::object memo = py::getattr(self, "_names_memo", py::none());
                 std::uint64_t known = 0;  // versions start at 1
                 if (!memo.is_none()) known = memo.cast<py::tuple>()[0].cast<std::uint64_t>();
                 {
                     py::gil_scoped_release nogil;
                     translate([&] {
                         p.route_into(r, xa.data(), 1, intercept, &in_tokens, 1,
                                      mixllm::ScoreParams{inv_lam, alpha, beta, tau}, true, known,
                                      "x");
                     });
                 }
                 if (r.version != known) {
                     memo = py::make_tuple(r.version, py::tuple(py::cast(r.names)));
                     self.attr("_names_memo") = memo;
                 }
                 const auto names = memo.cast<py::tuple>()[1].cast<py::tuple>();
                 const std::size_t K = r.terms.size() / mixllm::kNumTerms;
                 darray terms({static_cast<py::ssize_t>(mixllm::kNumTerms), static_cast<py::ssize_t>(K)});
                 double* pt = terms.mutable_data();
                 for (std::size_t k = 0; k < K; ++k)
                     for (std::size_t j = 0; j < mixllm::kNumTerms; ++j)
                         pt[j * K + k] = r.terms[k * mixllm::kNumTerms + j];
                 // Read-only, as the Decision holding it is immutable (NumPy's own setflags).
                 terms.attr("setflags")(py::arg("write") = false);
                 const auto k = static_cast<std::size_t>(r.choice[0]);
                 return py::make_tuple(py::object(names[k]), k, names, std::move(terms));
             },
             py::arg("x"), py::arg("input_tokens"), py::arg("inv_lam"), py::arg("alpha"),
             py::arg("beta"), py::arg("tau"), py::arg("intercept"))
        .def("arm",
             [](const Pool& p, const std::string& name) {
                 mixllm::ArmView s;
                 {
                     py::gil_scoped_release nogil;
                     s = translate([&] { return p.arm(name); });
                 }
                 return arm_dict(s, p.dim(), p.n_targets());
             },
             py::arg("name"))
        .def("theta",
             [](const Pool& p, const std::string& name) {
                 std::vector<double> th = translate([&] { return p.theta(name); });
                 return to_array(th, {static_cast<py::ssize_t>(p.n_targets()),
                                      static_cast<py::ssize_t>(p.dim())});
             },
             py::arg("name"))
        .def("snapshot",
             [](const Pool& p) { return snapshot_dict(p.snapshot(), p.dim(), p.n_targets()); },
             "The whole state as arrays (persistence; restored bit for bit by from_snapshot).")
        .def_static("from_snapshot",
             [](std::size_t dim, std::size_t n_targets, std::size_t refactor_every,
                std::size_t max_rank, const py::dict& state) {
                 mixllm::Snapshot s = snapshot_from(state);
                 return translate([&] {
                     return Pool::from_snapshot(dim, n_targets, refactor_every, max_rank,
                                                std::move(s));
                 });
             },
             py::arg("dim"), py::arg("n_targets"), py::arg("refactor_every"), py::arg("max_rank"),
             py::arg("state"));
}
