// Kernel entry points: the dispatch (simd_backend, set_simd_backend, cpu_features, backend_for),
// the static encoder's pooling (embed_pool), and the k_* test seams that hold every backend to
// the NumPy reference.
#include "common.hpp"
#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <set>
#include <stdexcept>

namespace {

std::size_t square_side(const darray& M) {
    require(M.ndim() == 2 && M.shape(0) == M.shape(1), "M must be a square 2-d array");
    return static_cast<std::size_t>(M.shape(0));
}

using farray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i32array = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;
using i64array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// The triangular products come in two storages (float64 and float32 panels) and two shapes (one
// vector, a batch); their test seams differ in nothing else.
struct Layout {
    const char* mat;                         // argument name: "Rp" or "P"
    std::size_t (*size)(std::size_t n);      // entries the storage holds for size n
    const char* bad_size;                    // message when it does not
};
constexpr Layout kPanels{"P", mixllm::panel_size,
                         "P must hold panel_size(n) entries (panel layout)"};

template <typename T>
using MvKernel = void (*)(const T*, const double*, double*, std::size_t);
template <typename T>
using MmKernel = void (*)(const T*, const double*, std::size_t, std::size_t, double*);
template <typename T>
using tarray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// y = M x
template <typename T>
void def_mv(py::module_& m, const char* name, MvKernel<T> mixllm::Kernels::*kernel, Layout L) {
    m.def(name, [kernel, L](const tarray<T>& M, const darray& x) {
        require(x.ndim() == 1 && M.ndim() == 1, std::string(L.mat) + " and x must be 1-d");
        const std::size_t n = static_cast<std::size_t>(x.shape(0));
        require(static_cast<std::size_t>(M.shape(0)) == L.size(n), L.bad_size);
        darray y(static_cast<py::ssize_t>(n));
        double* py_ = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            (mixllm::kernels().*kernel)(M.data(), x.data(), py_, n);
        }
        return y;
    }, py::arg(L.mat), py::arg("x"));
}

// Y_b = M x_b for every row of X
template <typename T>
void def_mm(py::module_& m, const char* name, MmKernel<T> mixllm::Kernels::*kernel, Layout L) {
    m.def(name, [kernel, L](const tarray<T>& M, const darray& X) {
        require(X.ndim() == 2 && M.ndim() == 1, std::string(L.mat) + " must be 1-d and X 2-d");
        const std::size_t B = static_cast<std::size_t>(X.shape(0));
        const std::size_t n = static_cast<std::size_t>(X.shape(1));
        require(static_cast<std::size_t>(M.shape(0)) == L.size(n), L.bad_size);
        darray Y({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(n)});
        double* py_ = Y.mutable_data();
        {
            py::gil_scoped_release nogil;
            (mixllm::kernels().*kernel)(M.data(), X.data(), B, n, py_);
        }
        return Y;
    }, py::arg(L.mat), py::arg("X"));
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("simd_backend", [] { return std::string(mixllm::kernels().name); },
          "Name of the kernel table in use: 'scalar', 'avx2' or 'avx512'.");
    m.def("available_backends", &mixllm::available_backends,
          "Backends this CPU can run, 'scalar' first and the best last.");
    m.def("set_simd_backend", [](const std::string& name) {
        try {
            mixllm::set_backend(name);
        } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
        }
    }, py::arg("name"), "Force a kernel table by name (ValueError if unavailable).");

    // The dispatch's inputs and its decision, for the tests and for a user's bug report.
    static constexpr const char* kFeatures[] = {"avx", "avx2", "fma", "avx512f", "avx512dq",
                                                "avx512vl", "os_avx", "os_avx512"};
    m.def("cpu_features", [] {
        const mixllm::CpuFeatures f = mixllm::cpu_features();
        const bool v[] = {f.avx, f.avx2, f.fma, f.avx512f, f.avx512dq, f.avx512vl, f.os_avx,
                          f.os_avx512};
        py::dict out;
        for (std::size_t i = 0; i < std::size(v); ++i) out[kFeatures[i]] = v[i];
        return out;
    }, "This CPU's features the dispatch reads (instruction sets; os_avx and os_avx512: the "
       "operating system saves the AVX and AVX-512 registers).");
    m.def("backend_for", [](const std::set<std::string>& features) {
        for (const auto& name : features)
            if (std::find_if(std::begin(kFeatures), std::end(kFeatures),
                             [&](const char* k) { return name == k; }) == std::end(kFeatures))
                throw py::value_error("unknown CPU feature: '" + name + "'");
        auto has = [&](const char* k) { return features.count(k) > 0; };
        mixllm::CpuFeatures f;
        f.avx = has("avx"), f.avx2 = has("avx2"), f.fma = has("fma");
        f.avx512f = has("avx512f"), f.avx512dq = has("avx512dq"), f.avx512vl = has("avx512vl");
        f.os_avx = has("os_avx"), f.os_avx512 = has("os_avx512");
        return mixllm::backend_for(f);
    }, py::arg("features"),
       "The best backend for a CPU with these features (names as in cpu_features()): the "
       "dispatch's decision, a pure function.");

    m.def("k_dot", [](const darray& a, const darray& b) {
        require(a.ndim() == 1 && b.ndim() == 1 && a.shape(0) == b.shape(0),
                "a and b must be 1-d arrays of equal length");
        const std::size_t n = static_cast<std::size_t>(a.shape(0));
        py::gil_scoped_release nogil;
        return mixllm::kernels().dot(a.data(), b.data(), n);
    }, py::arg("a"), py::arg("b"));



    m.def("k_syr", [](const darray& M, const darray& u, double c) {
        const std::size_t n = square_side(M);
        require_shape(u, {n}, "u");
        // The kernel works in place; a copy keeps the caller's array unchanged.
        darray res({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n)});
        double* p = res.mutable_data();
        std::copy(M.data(), M.data() + n * n, p);
        {
            py::gil_scoped_release nogil;
            mixllm::kernels().syr(p, u.data(), c, n);
        }
        return res;
    }, py::arg("M"), py::arg("u"), py::arg("c"));


    m.def("k_gemv_rect", [](const darray& M, const darray& x) {
        require(M.ndim() == 2 && x.ndim() == 1 && M.shape(1) == x.shape(0),
                "M must be 2-d with as many columns as x has entries");
        const std::size_t rows = static_cast<std::size_t>(M.shape(0));
        const std::size_t n = static_cast<std::size_t>(M.shape(1));
        darray y(static_cast<py::ssize_t>(rows));
        double* py_ = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            mixllm::kernels().gemv_rect(M.data(), x.data(), py_, rows, n);
        }
        return y;
    }, py::arg("M"), py::arg("x"));

    m.def("k_gemv_t", [](const darray& M, const darray& x) {
        require(M.ndim() == 2 && x.ndim() == 1 && M.shape(0) == x.shape(0),
                "M must be 2-d with as many rows as x has entries");
        const std::size_t rows = static_cast<std::size_t>(M.shape(0));
        const std::size_t n = static_cast<std::size_t>(M.shape(1));
        darray y(static_cast<py::ssize_t>(n));
        double* py_ = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            mixllm::kernels().gemv_t(M.data(), x.data(), py_, rows, n);
        }
        return y;
    }, py::arg("M"), py::arg("x"));

    m.def("k_gemm_nt", [](const darray& X, const darray& Y) {
        require(X.ndim() == 2 && Y.ndim() == 2 && X.shape(1) == Y.shape(1),
                "X and Y must be 2-d with the same number of columns");
        const std::size_t m = static_cast<std::size_t>(X.shape(0));
        const std::size_t nc = static_cast<std::size_t>(Y.shape(0));
        const std::size_t len = static_cast<std::size_t>(X.shape(1));
        darray G({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(nc)});
        double* pg = G.mutable_data();
        {
            py::gil_scoped_release nogil;
            mixllm::kernels().gemm_nt(X.data(), len, Y.data(), len, m, nc, len, pg, nc);
        }
        return G;
    }, py::arg("X"), py::arg("Y"), "G = X Y^T by the active backend's gemm_nt.");

    // The factorisations of linalg.hpp on the active backend; None where A is not numerically
    // positive definite.
    m.def("k_inverse_cholesky_factor", [](const darray& A) -> py::object {
        const std::size_t n = square_side(A);
        darray R(static_cast<py::ssize_t>(mixllm::packed_row(n)));
        double* pr = R.mutable_data();
        bool ok = false;
        {
            py::gil_scoped_release nogil;
            std::vector<double> work(2 * n * n);
            ok = mixllm::inverse_cholesky_factor(A.data(), pr, n, work.data());
        }
        return ok ? py::object(R) : py::object(py::none());
    }, py::arg("A"), "R = L^{-1} (packed lower triangle) for A = L L^T, or None.");
    m.def("k_spd_inverse", [](const darray& A) -> py::object {
        const std::size_t n = square_side(A);
        darray Ainv({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n)});
        double* pa = Ainv.mutable_data();
        bool ok = false;
        {
            py::gil_scoped_release nogil;
            std::vector<double> work(2 * n * n);
            ok = mixllm::spd_inverse(A.data(), pa, n, work.data());
        }
        return ok ? py::object(Ainv) : py::object(py::none());
    }, py::arg("A"), "A^{-1} of a symmetric positive-definite A, or None.");
    m.def("k_positive_definite", [](const darray& A) {
        const std::size_t n = square_side(A);
        py::gil_scoped_release nogil;
        std::vector<double> work(n * n);
        return mixllm::positive_definite(A.data(), n, work.data());
    }, py::arg("A"), "Whether the Cholesky factorisation of A succeeds.");

    m.def("k_pack_panels", [](const darray& Rp, std::size_t n) {
        require(Rp.ndim() == 1 && static_cast<std::size_t>(Rp.shape(0)) == mixllm::packed_row(n),
                "Rp must hold n(n+1)/2 entries (packed lower triangle)");
        darray P(static_cast<py::ssize_t>(mixllm::panel_size(n)));
        mixllm::pack_panels(Rp.data(), P.mutable_data(), n);
        return P;
    }, py::arg("Rp"), py::arg("n"));

    def_mv<double>(m, "k_panel_mv", &mixllm::Kernels::panel_mv, kPanels);
    def_mm<double>(m, "k_panel_mm", &mixllm::Kernels::panel_mm, kPanels);
    m.def("k_panel_tmv", [](const darray& P, const darray& x) {
        require(x.ndim() == 1 && P.ndim() == 1, "P and x must be 1-d");
        const std::size_t n = static_cast<std::size_t>(x.shape(0));
        require(static_cast<std::size_t>(P.shape(0)) == mixllm::panel_size(n),
                "P must hold panel_size(n) entries (panel layout)");
        darray y(static_cast<py::ssize_t>(n));
        double* py_ = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            std::vector<double> work(mixllm::kPanel * n);
            mixllm::kernels().panel_tmv(P.data(), x.data(), py_, n, work.data());
        }
        return y;
    }, py::arg("P"), py::arg("x"));

    m.def("k_panels_to_f32", [](const darray& P, std::size_t n) {
        require(P.ndim() == 1 && static_cast<std::size_t>(P.shape(0)) == mixllm::panel_size(n),
                "P must hold panel_size(n) entries (panel layout)");
        farray P32(static_cast<py::ssize_t>(mixllm::panel_size(n)));
        mixllm::panels_to_f32(P.data(), P32.mutable_data(), n);
        return P32;
    }, py::arg("P"), py::arg("n"));

    def_mv<float>(m, "k_panel_mv_f32", &mixllm::Kernels::panel_mv_f32, kPanels);
    def_mm<float>(m, "k_panel_mm_f32", &mixllm::Kernels::panel_mm_f32, kPanels);

    m.def("embed_pool", [](const farray& T, const farray& w, const i32array& ids,
                             const i64array& offsets) {
        require(T.ndim() == 2, "table must be 2-d (vocab, dim)");
        const std::size_t vocab = static_cast<std::size_t>(T.shape(0));
        const std::size_t dim = static_cast<std::size_t>(T.shape(1));
        require(w.ndim() == 1 && static_cast<std::size_t>(w.shape(0)) == vocab,
                "weights must be 1-d with one entry per table row");
        require(ids.ndim() == 1 && offsets.ndim() == 1 && offsets.shape(0) >= 1,
                "ids must be 1-d and offsets 1-d with at least one entry");
        const std::size_t B = static_cast<std::size_t>(offsets.shape(0)) - 1;
        const std::int64_t* off = offsets.data();
        const std::int64_t n_ids = static_cast<std::int64_t>(ids.shape(0));
        require(off[0] == 0 && off[B] == n_ids,
                "offsets must start at 0 and end at len(ids)");
        for (std::size_t b = 0; b < B; ++b)
            require(off[b] <= off[b + 1], "offsets must be non-decreasing");
        // Every id is checked before the kernel reads the table: an out-of-range id would read
        // outside it.
        const std::int32_t* pid = ids.data();
        for (std::int64_t i = 0; i < n_ids; ++i)
            require(pid[i] >= 0 && static_cast<std::size_t>(pid[i]) < vocab,
                    "token id " + std::to_string(pid[i]) + " is outside the table (" +
                        std::to_string(vocab) + " rows)");
        farray out({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(dim)});
        float* po = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            mixllm::kernels().embed_pool(T.data(), dim, w.data(), pid, off, B, po);
        }
        return out;
    }, py::arg("table"), py::arg("weights"), py::arg("ids"), py::arg("offsets"),
    "Static text embeddings (the static encoder's pooling), float32 (vocab, dim) table,\n"
    "float32 weights (vocab,), int32 ids and int64 offsets (B + 1,): text b owns\n"
    "ids[offsets[b]:offsets[b+1]]; returns (B, dim) float32, row b the L2-normalised\n"
    "sum of weights[i] * table[i] over its ids (zero for a text without tokens). Raises\n"
    "ValueError for an id outside the table or malformed offsets. Error bound against\n"
    "float64: cpp/include/mixllm/kernels.hpp.");
}
