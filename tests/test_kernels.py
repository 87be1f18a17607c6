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


AVX2 = {"avx", "avx2", "fma", "os_avx"}
AVX512 = AVX2 | {"avx512f", "avx512dq", "avx512vl", "os_avx512"}


# The dispatch's decision table: a backend needs every instruction set its file is compiled
# for and the OS's saving of its registers; one missing flag drops it (the AVX-512F-only CPU
# that would have run avx512.cpp's DQ/VL instructions, an OS without AVX-512 state, ...).
@pytest.mark.parametrize("features, want", [
    (set(), "scalar"),
    (AVX512, "avx512"),
    (AVX2, "avx2"),
    (AVX2 | {"avx512f"}, "avx2"),
    (AVX2 | {"avx512f", "os_avx512"}, "avx2"),
    (AVX512 - {"avx512dq"}, "avx2"),
    (AVX512 - {"avx512vl"}, "avx2"),
    (AVX512 - {"os_avx512"}, "avx2"),
    (AVX512 - {"os_avx"}, "scalar"),
    (AVX512 - {"fma"}, "scalar"),
    (AVX512 - {"avx2"}, "scalar"),
    (AVX512 - {"avx"}, "scalar"),
    (AVX2 - {"os_avx"}, "scalar"),
    ({"avx512f", "avx512dq", "avx512vl", "os_avx512"}, "scalar"),
])
def test_backend_decision_table(features, want):
    assert _core.backend_for(features) == want


def test_backend_probe_agrees_with_the_table():
    have = {k for k, v in _core.cpu_features().items() if v}
    assert set(_core.cpu_features()) == AVX512
    assert mixllm.available_backends()[-1] == _core.backend_for(have)
    with pytest.raises(ValueError, match="unknown CPU feature"):
        _core.backend_for({"avx3"})


@pytest.mark.parametrize("n", SIZES)
def test_dot(backend, rng, n):
    a, b = rng.normal(size=n), rng.normal(size=n)
    scale = np.abs(a * b).sum()
    assert abs(_core.k_dot(a, b) - _reference.dot(a, b)) <= RTOL * scale + 1e-300




@pytest.mark.parametrize("n", SIZES)
def test_syr_leaves_input_and_matches(backend, rng, n):
    M, u = rng.normal(size=(n, n)), rng.normal(size=n)
    M_before = M.copy()
    out = _core.k_syr(M, u, -0.37)
    np.testing.assert_array_equal(M, M_before)
    np.testing.assert_allclose(out, _reference.syr(M, u, -0.37), rtol=1e-13, atol=1e-13)



def _packed_lower(rng, n):
    return _reference.pack_lower(np.tril(rng.normal(size=(n, n))))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("m", [0, 1, 2, 4, 5, 9])  # rows go in pairs: even and odd counts
def test_gemv_rect(backend, rng, n, m):
    M, x = rng.normal(size=(m, n)), rng.normal(size=n)
    scale = np.abs(M) @ np.abs(x)
    np.testing.assert_array_less(np.abs(_core.k_gemv_rect(M, x) - _reference.gemv_rect(M, x)),
                                 RTOL * scale + 1e-300)


# panel_mv takes panels four at a time: counts 1-4 past a multiple of four, and a partial
# last panel at each position of a group (25: 4 panels, the last of 1 row; 57, 63: 8).
@pytest.mark.parametrize("n", SIZES + [24, 25, 40, 57, 63])
def test_panel_mv(backend, rng, n):
    Rp, x = _packed_lower(rng, n), rng.normal(size=n)
    want = _reference.unpack_lower(Rp, n) @ x
    scale = np.abs(_reference.unpack_lower(Rp, n)) @ np.abs(x)
    P = _core.k_pack_panels(Rp, n)
    np.testing.assert_array_equal(P, _reference.pack_panels(Rp, n))  # a pure copy: exact
    np.testing.assert_array_less(np.abs(_core.k_panel_mv(P, x) - want), RTOL * scale + 1e-300)
    np.testing.assert_allclose(_reference.panel_mv(P, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", SIZES + [24, 25, 40, 57, 63])
def test_panel_tmv(backend, rng, n):
    Rp, x = _packed_lower(rng, n), rng.normal(size=n)
    R = _reference.unpack_lower(Rp, n)
    P = _core.k_pack_panels(Rp, n)
    scale = np.abs(R).T @ np.abs(x)
    np.testing.assert_array_less(np.abs(_core.k_panel_tmv(P, x) - R.T @ x), RTOL * scale + 1e-300)
    np.testing.assert_allclose(_reference.panel_tmv(P, x), R.T @ x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("B", [1, 3, 4, 5, 8, 9, 13, 17])
def test_panel_mm(backend, rng, n, B):
    Rp, X = _packed_lower(rng, n), rng.normal(size=(B, n))
    want = X @ _reference.unpack_lower(Rp, n).T
    scale = np.abs(X) @ np.abs(_reference.unpack_lower(Rp, n)).T
    P = _core.k_pack_panels(Rp, n)
    np.testing.assert_array_less(np.abs(_core.k_panel_mm(P, X) - want), RTOL * scale + 1e-300)


# float32 panels (the opt-in precision="float32" scoring). The rounding to float32 is exact to
# the reference (round to nearest). A decision (panel_mv_f32) multiplies and sums in float32 over
# blocks of 8 columns in an order every backend and the NumPy twin share, so it equals the twin
# bit for bit; its bound (kernels.hpp): x rounding, product and three float32 sums,
#   |y - R32 x| <= (5 2^-24 + ceil(n/8) 2^-53) |R32| |x|   (RTOL covers the float64 part),
# and against the float64 triangle one rounding more, 6 2^-24. The batch kernel widens the
# entries of its blocks of 4 or 8 queries (float64 products: the twin panel_mm_f32 to RTOL) and
# sends the queries left over through panel_mv_f32, so a batch is held to the decision's bound.
F32_RTOL = 2.0 ** -24
F32_MV_BOUND = 5 * F32_RTOL

# panel_mv_f32 takes panels four at a time (AVX2: two) in blocks of 8 columns: a partial last
# panel at each position of a group, and each count of columns in its last block.
F32_SIZES = SIZES + [2, 8, 9, 24, 25, 39, 40, 41, 57, 63, 64, 65, 100, 129]


@pytest.mark.parametrize("n", F32_SIZES)
def test_panel_mv_f32(backend, rng, n):
    Rp, x = _packed_lower(rng, n), rng.normal(size=n)
    P = _core.k_pack_panels(Rp, n)
    P32 = _core.k_panels_to_f32(P, n)
    assert P32.dtype == np.float32
    np.testing.assert_array_equal(P32, _reference.panels_to_f32(P))
    got = _core.k_panel_mv_f32(P32, x)
    np.testing.assert_array_equal(got, _reference.panel_mv_f32(P32, x))
    # the twin, and so the kernel, within the bound of the exact product of the float32 panels
    R32 = _reference.unpack_lower(Rp, n).astype(np.float32).astype(np.float64)
    scale32 = np.abs(R32) @ np.abs(x)
    np.testing.assert_array_less(np.abs(got - R32 @ x), (F32_MV_BOUND + RTOL) * scale32 + 1e-300)
    scale = np.abs(_reference.unpack_lower(Rp, n)) @ np.abs(x)
    np.testing.assert_array_less(np.abs(got - (_reference.unpack_lower(Rp, n) @ x)),
                                 (F32_MV_BOUND + F32_RTOL + RTOL) * scale + 1e-300)


def test_panel_mv_f32_bound_is_met_where_it_is_tight(backend):
    # Equal terms whose x all round down by the same ~2^-24 (the products and sums are then
    # exact): the error is that rounding, within the bound, and not hidden by cancellation.
    n = 64
    x = np.full(n, 1.0 + 2.0 ** -24 * 0.999)  # rounds down to 1.0 in float32
    Rp = _reference.pack_lower(np.tril(np.full((n, n), 1.0 + 2.0 ** -23)))
    P32 = _core.k_panels_to_f32(_core.k_pack_panels(Rp, n), n)
    got = _core.k_panel_mv_f32(P32, x)
    np.testing.assert_array_equal(got, _reference.panel_mv_f32(P32, x))
    R32 = _reference.unpack_lower(Rp, n).astype(np.float32).astype(np.float64)
    err = np.abs(got - R32 @ x) / (np.abs(R32) @ np.abs(x))
    assert np.all(err <= F32_MV_BOUND + RTOL)
    assert err.max() >= 0.9 * F32_RTOL


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("B", [1, 3, 4, 5, 8, 9, 13, 17])
def test_panel_mm_f32(backend, rng, n, B):
    Rp, X = _packed_lower(rng, n), rng.normal(size=(B, n))
    P32 = _core.k_panels_to_f32(_core.k_pack_panels(Rp, n), n)
    scale = np.abs(X) @ np.abs(_reference.unpack_lower(Rp, n)).T
    got = _core.k_panel_mm_f32(P32, X)
    np.testing.assert_array_less(np.abs(got - _reference.panel_mm_f32(P32, X)),
                                 (F32_MV_BOUND + RTOL) * scale + 1e-300)
    np.testing.assert_array_less(np.abs(got - (X @ _reference.unpack_lower(Rp, n).T)),
                                 (F32_MV_BOUND + F32_RTOL + RTOL) * scale + 1e-300)
    # a single query is a decision: panel_mv_f32 exactly
    if B == 1:
        np.testing.assert_array_equal(got[0], _core.k_panel_mv_f32(P32, X[0]))


def test_inverse_cholesky_factor_reference(rng):
    A = _spd(rng, 9)
    R = _reference.unpack_lower(_reference.inverse_cholesky_factor(A), 9)
    np.testing.assert_allclose(R.T @ R, np.linalg.inv(A), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("m", [0, 1, 3, 4, 5, 8, 9])  # rows go in fours: every remainder
def test_gemv_t(backend, rng, n, m):
    M, x = rng.normal(size=(m, n)), rng.normal(size=m)
    scale = np.abs(x) @ np.abs(M)
    np.testing.assert_array_less(np.abs(_core.k_gemv_t(M, x) - x @ M), RTOL * scale + 1e-300)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 32, 33])
@pytest.mark.parametrize("nc", [1, 3, 4, 5, 8, 9, 33])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 16, 17, 385])
def test_gemm_nt(backend, rng, m, nc, n):
    # register tiles of 2 rows x 4 columns x 4 terms: every remainder of each
    X, Y = rng.normal(size=(m, n)), rng.normal(size=(nc, n))
    scale = np.abs(X) @ np.abs(Y).T
    np.testing.assert_array_less(np.abs(_core.k_gemm_nt(X, Y) - X @ Y.T), RTOL * scale + 1e-300)


# The blocked factorisations (linalg.cpp; blocks of 32: sizes straddle the block and the
# tiles) against the reference. Cholesky's backward error is ~n 2^-53 |L||L^T|, so on these
# well-conditioned matrices (eigenvalues in [1, ~5]) both factors agree to ~n 2^-53 relative.
FACTOR_SIZES = [1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 384, 385]


@pytest.mark.parametrize("n", FACTOR_SIZES)
def test_inverse_cholesky_factor(backend, rng, n):
    A = _spd(rng, n)
    got = _core.k_inverse_cholesky_factor(A)
    want = _reference.inverse_cholesky_factor(A)
    assert np.abs(got - want).max() <= 1e-13 * np.abs(want).max()
    # exactly lower triangular: R's upper triangle is zero, its diagonal positive
    R = _reference.unpack_lower(got, n)
    assert np.all(np.diag(R) > 0.0)
    np.testing.assert_allclose(R @ A @ R.T, np.eye(n), atol=1e-12 * n)


@pytest.mark.parametrize("n", FACTOR_SIZES)
def test_spd_inverse(backend, rng, n):
    A = _spd(rng, n)
    got = _core.k_spd_inverse(A)
    np.testing.assert_array_equal(got, got.T)
    want = _reference.spd_inverse(A)
    assert np.abs(got - want).max() <= 1e-13 * np.abs(want).max()


@pytest.mark.parametrize("n", FACTOR_SIZES)
def test_positive_definite_decides_at_the_smallest_eigenvalue(backend, rng, n):
    A = _spd(rng, n)
    lo = np.linalg.eigvalsh(A)[0]
    assert _core.k_positive_definite(A)
    assert _core.k_positive_definite(A - 0.99 * lo * np.eye(n))
    assert not _core.k_positive_definite(A - 1.01 * lo * np.eye(n))
    assert _core.k_inverse_cholesky_factor(A - 1.01 * lo * np.eye(n)) is None
    assert _core.k_spd_inverse(A - 1.01 * lo * np.eye(n)) is None
    # a NaN or an infinite pivot is refused, wherever it is
    B = A.copy()
    B[n - 1, n - 1] = np.nan
    assert not _core.k_positive_definite(B)


def test_kernel_shape_errors():
    with pytest.raises(ValueError, match="equal length"):
        _core.k_dot(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="square"):
        _core.k_syr(np.ones((3, 4)), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="packed"):
        _core.k_pack_panels(np.ones(5), 3)
    with pytest.raises(ValueError, match="panel"):
        _core.k_panel_mv(np.ones(5), np.ones(3))
    with pytest.raises(ValueError, match="panel"):
        _core.k_panel_mv_f32(np.ones(5, np.float32), np.ones(3))


def _pool_case(rng, vocab, dim, lengths):
    T = rng.normal(size=(vocab, dim)).astype(np.float32)
    w = rng.uniform(0.0, 2.0, size=vocab).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, vocab, size=int(offsets[-1])).astype(np.int32)
    return T, w, ids, offsets


@pytest.mark.parametrize("dim", SIZES)
@pytest.mark.parametrize("lengths", [[1], [0], [3, 0, 50], [7, 1, 16, 33]])
def test_embed_pool(backend, rng, dim, lengths):
    # float32 accumulation over L tokens: error <= ~L * 2^-24 * sum_i |w_i T_i| / ||s|| per
    # entry (the bound below doubles it); against the float64 reference.
    T, w, ids, offsets = _pool_case(rng, 50, dim, lengths)
    got = _core.embed_pool(T, w, ids, offsets)
    want = _reference.embed_pool(T, w, ids, offsets)
    assert got.dtype == np.float32 and got.shape == (len(lengths), dim)
    for b, L in enumerate(lengths):
        rows = ids[offsets[b]:offsets[b + 1]]
        s = (w[rows, None].astype(np.float64) * T[rows]).sum(axis=0)
        if L == 0:
            np.testing.assert_array_equal(got[b], 0.0)
            continue
        absum = (np.abs(w[rows, None]) * np.abs(T[rows])).sum(axis=0)
        bound = 2 * (L + dim) * 2.0**-24 * absum.max() / np.linalg.norm(s) + 1e-7
        np.testing.assert_array_less(np.abs(got[b] - want[b]), bound)
        assert abs(np.linalg.norm(got[b].astype(np.float64)) - 1.0) < 1e-5


def test_embed_pool_backends_agree_closely(rng):
    T, w, ids, offsets = _pool_case(rng, 200, 384, [50, 5, 300])
    before = mixllm.simd_backend()
    try:
        outs = []
        for name in mixllm.available_backends():
            mixllm.set_simd_backend(name)
            outs.append(_core.embed_pool(T, w, ids, offsets))
    finally:
        mixllm.set_simd_backend(before)
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=0, atol=2e-6)


def test_embed_pool_rejects_bad_input():
    T, w = np.ones((4, 3), np.float32), np.ones(4, np.float32)
    ok_ids, ok_off = np.array([0, 3], np.int32), np.array([0, 2], np.int64)
    assert _core.embed_pool(T, w, ok_ids, ok_off).shape == (1, 3)
    with pytest.raises(ValueError, match="outside the table"):
        _core.embed_pool(T, w, np.array([0, 4], np.int32), ok_off)
    with pytest.raises(ValueError, match="outside the table"):
        _core.embed_pool(T, w, np.array([-1, 0], np.int32), ok_off)
    with pytest.raises(ValueError, match="one entry per table row"):
        _core.embed_pool(T, np.ones(3, np.float32), ok_ids, ok_off)
    with pytest.raises(ValueError, match="end at len"):
        _core.embed_pool(T, w, ok_ids, np.array([0, 3], np.int64))
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.embed_pool(T, w, ok_ids, np.array([0, 2, 1, 2], np.int64))
    with pytest.raises(ValueError, match="2-d"):
        _core.embed_pool(np.ones(4, np.float32), w, ok_ids, ok_off)
