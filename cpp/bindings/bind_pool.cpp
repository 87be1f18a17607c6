// mixllm._core.Pool: the routing state. Shapes are checked here, with the GIL held; the work
// runs without it and the Pool's own reader/writer lock orders concurrent calls.
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

py::dict arm_dict(const mixllm::ArmState& s, std::size_t d, std::size_t T) {
    const auto sd = static_cast<py::ssize_t>(d), sT = static_cast<py::ssize_t>(T);
    py::dict out;
    out["name"] = s.name;
    out["A"] = to_array(s.A, {sd, sd});
    out["Ainv"] = to_array(s.Ainv, {sd, sd});
    out["b"] = to_array(s.b, {sT, sd});
    out["theta"] = to_array(s.theta, {sT, sd});
    out["input_price"] = s.input_price;
    out["output_price"] = s.output_price;
    out["wait"] = s.wait;
    out["n_obs"] = s.n_obs;
    out["since_refactor"] = s.since_refactor;
    return out;
}

}  // namespace

void bind_pool(py::module_& m) {
    m.attr("N_TERMS") = mixllm::kNumTerms;
    m.attr("MAX_LOG_TOKENS") = mixllm::kMaxLogTokens;
    py::class_<Pool>(m, "Pool", "Per-LLM online ridge state and MixLLM scoring (see pool.hpp).")
        .def(py::init([](std::size_t dim, std::size_t n_targets, std::size_t refactor_every) {
                 return translate([&] { return new Pool(dim, n_targets, refactor_every); });
             }),
             py::arg("dim"), py::arg("n_targets") = 2, py::arg("refactor_every") = 4096)
        .def_property_readonly("dim", &Pool::dim)
        .def_property_readonly("n_targets", &Pool::n_targets)
        .def_property_readonly("refactor_every", &Pool::refactor_every)
        .def("__len__", &Pool::size)
        .def("names", &Pool::names)
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
             [](Pool& p, const std::string& name, const darray& A, py::object Ainv,
                const darray& b, py::object theta, std::uint64_t n_obs, std::uint64_t since,
                double in_price, double out_price) {
                 const std::size_t d = p.dim(), T = p.n_targets();
                 require_shape(A, {d, d}, "A");
                 require_shape(b, {T, d}, "b");
                 require(Ainv.is_none() == theta.is_none(), "give both Ainv and theta, or neither");
                 darray Ai, th;
                 if (!Ainv.is_none()) {
                     Ai = Ainv.cast<darray>();
                     th = theta.cast<darray>();
                     require_shape(Ai, {d, d}, "Ainv");
                     require_shape(th, {T, d}, "theta");
                 }
                 const double* pAi = Ainv.is_none() ? nullptr : Ai.data();
                 const double* pth = theta.is_none() ? nullptr : th.data();
                 py::gil_scoped_release nogil;
                 translate([&] {
                     p.add_arm_state(name, A.data(), pAi, b.data(), pth, n_obs, since, in_price,
                                     out_price);
                 });
             },
             py::arg("name"), py::arg("A"), py::arg("Ainv"), py::arg("b"), py::arg("theta"),
             py::arg("n_obs"), py::arg("since_refactor"), py::arg("input_price"),
             py::arg("output_price"))
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
             [](Pool& p, const std::string& name, const darray& x, const darray& y) {
                 require_shape(x, {p.dim()}, "x");
                 require_shape(y, {p.n_targets()}, "y");
                 py::gil_scoped_release nogil;
                 translate([&] { p.update(name, x.data(), y.data()); });
             },
             py::arg("name"), py::arg("x"), py::arg("y"))
        .def("update_batch",
             [](Pool& p, const std::string& name, const darray& X, const darray& Y) {
                 const std::size_t n = rows_of(X, p.dim(), "X");
                 require_shape(Y, {n, p.n_targets()}, "Y");
                 py::gil_scoped_release nogil;
                 translate([&] { p.update_batch(name, X.data(), Y.data(), n); });
             },
             py::arg("name"), py::arg("X"), py::arg("Y"))
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
        .def("arm",
             [](const Pool& p, const std::string& name) {
                 mixllm::ArmState s = translate([&] { return p.arm(name); });
                 return arm_dict(s, p.dim(), p.n_targets());
             },
             py::arg("name"));
}
