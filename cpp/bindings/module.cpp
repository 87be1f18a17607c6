// mixllm._core: the only Python extension. Logic lives in cpp/src; this seam converts arrays,
// checks shapes before the GIL is released, and translates exceptions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_kernels(py::module_& m);
void bind_pool(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "mixllm native core: SIMD kernels and the online-ridge routing pool";
    bind_kernels(m);
    bind_pool(m);
}
