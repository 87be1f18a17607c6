#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>

namespace py = pybind11;

using darray = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline void require(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
}

inline void require_shape(const darray& a, std::initializer_list<std::size_t> shape,
                          const char* name) {
    bool ok = static_cast<std::size_t>(a.ndim()) == shape.size();
    std::size_t i = 0;
    for (std::size_t s : shape) {
        if (!ok) break;
        ok = static_cast<std::size_t>(a.shape(static_cast<py::ssize_t>(i++))) == s;
    }
    if (!ok) {
        std::string want = "(";
        for (std::size_t s : shape) want += std::to_string(s) + ",";
        want.back() = ')';
        std::string got = "(";
        for (py::ssize_t j = 0; j < a.ndim(); ++j) got += std::to_string(a.shape(j)) + ",";
        if (a.ndim() == 0) got += ")"; else got.back() = ')';
        throw py::value_error(std::string(name) + " must have shape " + want + ", got " + got);
    }
}
