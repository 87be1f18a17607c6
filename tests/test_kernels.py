"""Every SIMD kernel against the float64 NumPy reference, on every backend.

Tolerance: the kernels sum in a different order than NumPy (several accumulators, FMA), so
results agree to a relative 1e-12 of the sum of absolute terms, far below routing relevance.
"""

from __future__ import annotations

import numpy as np
import pytest

import mixllm
from mixllm import _core, _reference

SIZES = [1, 7, 15, 16, 17, 31, 33, 384, 385, 1023]
RTOL = 1e-12


def _spd(rng, n):
    G = rng.normal(size=(n, n))
    return G @ G.T / n + np.eye(n)


def test_backend_selection_reports_what_runs(backend):
    assert mixllm.simd_backend() == backend
    assert mixllm.available_backends()[0] == "scalar"


def test_unknown_backend_is_a_value_error():
    before = mixllm.simd_backend()
    with pytest.raises(ValueError, match="not available"):
        mixllm.set_simd_backend("neon9000")
    assert mixllm.simd_backend() == before


@pytest.mark.parametrize("n", SIZES)
def test_dot(backend, rng, n):
    a, b = rng.normal(size=n), rng.normal(size=n)
    scale = np.abs(a * b).sum()
    assert abs(_core.k_dot(a, b) - _reference.dot(a, b)) <= RTOL * scale + 1e-300


@pytest.mark.parametrize("n", SIZES)
def test_gemv(backend, rng, n):
    M, x = rng.normal(size=(n, n)), rng.normal(size=n)
    scale = np.abs(M) @ np.abs(x)
    np.testing.assert_array_less(np.abs(_core.k_gemv(M, x) - _reference.gemv(M, x)),
                                 RTOL * scale + 1e-300)


@pytest.mark.parametrize("n", SIZES)
def test_quad(backend, rng, n):
    M, x = _spd(rng, n), rng.normal(size=n)
    scale = np.abs(x) @ np.abs(M) @ np.abs(x)
    assert abs(_core.k_quad(M, x) - _reference.quad(M, x)) <= RTOL * scale


@pytest.mark.parametrize("n", SIZES)
def test_syr_leaves_input_and_matches(backend, rng, n):
    M, u = rng.normal(size=(n, n)), rng.normal(size=n)
    M_before = M.copy()
    out = _core.k_syr(M, u, -0.37)
    np.testing.assert_array_equal(M, M_before)
    np.testing.assert_allclose(out, _reference.syr(M, u, -0.37), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("B", [1, 3, 4, 5, 9])
def test_quad_batch(backend, rng, n, B):
    M, X = _spd(rng, n), rng.normal(size=(B, n))
    scale = np.einsum("bi,ij,bj->b", np.abs(X), np.abs(M), np.abs(X))
    got = _core.k_quad_batch(M, X)
    np.testing.assert_array_less(np.abs(got - _reference.quad_batch(M, X)), RTOL * scale)


def _packed_lower(rng, n):
    return _reference.pack_lower(np.tril(rng.normal(size=(n, n))))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("m", [0, 1, 5, 9])
def test_gemv_rect(backend, rng, n, m):
    M, x = rng.normal(size=(m, n)), rng.normal(size=n)
    scale = np.abs(M) @ np.abs(x)
    np.testing.assert_array_less(np.abs(_core.k_gemv_rect(M, x) - _reference.gemv_rect(M, x)),
                                 RTOL * scale + 1e-300)


@pytest.mark.parametrize("n", SIZES)
def test_tpmv_and_panel_mv(backend, rng, n):
    Rp, x = _packed_lower(rng, n), rng.normal(size=n)
    want = _reference.tpmv(Rp, x)
    scale = np.abs(_reference.unpack_lower(Rp, n)) @ np.abs(x)
    np.testing.assert_array_less(np.abs(_core.k_tpmv(Rp, x) - want), RTOL * scale + 1e-300)
    P = _core.k_pack_panels(Rp, n)
    np.testing.assert_array_equal(P, _reference.pack_panels(Rp, n))  # a pure copy: exact
    np.testing.assert_array_less(np.abs(_core.k_panel_mv(P, x) - want), RTOL * scale + 1e-300)
    np.testing.assert_allclose(_reference.panel_mv(P, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("B", [1, 3, 4, 5, 8, 9, 13, 17])
def test_tpmm_and_panel_mm(backend, rng, n, B):
    Rp, X = _packed_lower(rng, n), rng.normal(size=(B, n))
    want = _reference.tpmm(Rp, X)
    scale = np.abs(X) @ np.abs(_reference.unpack_lower(Rp, n)).T
    np.testing.assert_array_less(np.abs(_core.k_tpmm(Rp, X) - want), RTOL * scale + 1e-300)
    P = _core.k_pack_panels(Rp, n)
    np.testing.assert_array_less(np.abs(_core.k_panel_mm(P, X) - want), RTOL * scale + 1e-300)


def test_inverse_cholesky_factor_reference(rng):
    A = _spd(rng, 9)
    R = _reference.unpack_lower(_reference.inverse_cholesky_factor(A), 9)
    np.testing.assert_allclose(R.T @ R, np.linalg.inv(A), rtol=1e-10, atol=1e-12)


def test_kernel_shape_errors():
    with pytest.raises(ValueError, match="equal length"):
        _core.k_dot(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="square"):
        _core.k_quad(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        _core.k_gemv(np.ones((3, 3)), np.ones(4))
    with pytest.raises(ValueError, match="columns"):
        _core.k_quad_batch(np.ones((3, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="packed"):
        _core.k_tpmv(np.ones(5), np.ones(3))
    with pytest.raises(ValueError, match="panel"):
        _core.k_panel_mv(np.ones(5), np.ones(3))
