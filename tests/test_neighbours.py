"""The outcome memory (neighbour-mean features) and the settings chosen inside fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mixllm import LLM
from mixllm.text.neighbours import OutcomeMemory
from mixllm.text.pipeline import PipelineConfig, TextRouter
from mixllm.text.selection import FEATURE_MAPS, choose, ridge_path
from fakes import HashEncoder

NAMES = ["a", "b", "c"]


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _brute(Eq, Es, Q, k, exclude=None):
    """NaN-aware mean quality over the k most similar stored rows, the plain way."""
    Es, Eq = _unit(Es), _unit(Eq)
    prior = np.nanmean(Q, axis=0)
    out = []
    for i, e in enumerate(Eq):
        sims = Es @ e
        order = [j for j in np.argsort(-sims, kind="stable") if j != (exclude[i] if exclude is not None else -1)]
        sel = Q[order[:k]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an LLM no neighbour observed
            m = np.nanmean(sel, axis=0)
        out.append(np.where(np.isnan(m), prior, m))
    return np.array(out)


def test_features_are_neighbour_means_and_leave_self_out():
    rng = np.random.default_rng(0)
    Es = rng.normal(size=(60, 8))
    Q = rng.random((60, 3))
    Q[rng.random((60, 3)) < 0.3] = np.nan
    m = OutcomeMemory((1, 5, 20), duplicates=None).fit(Es, Q, NAMES)
    Eq = rng.normal(size=(7, 8))
    got = m.features(Eq)
    assert got.shape == (7, 9) and m.out_dim == 9
    for b, k in enumerate((1, 5, 20)):
        np.testing.assert_allclose(got[:, 3 * b:3 * b + 3], _brute(Eq, Es, Q, k), atol=1e-12)
    self_out = m.features(Es, leave_self_out=True)
    for b, k in enumerate((5, 20)):
        np.testing.assert_allclose(self_out[:, 3 * (b + 1):3 * (b + 2)],
                                   _brute(Es, Es, Q, k, exclude=np.arange(60)), atol=1e-12)
    # a row's own outcome never enters its leave-self-out features
    lone = OutcomeMemory((1,)).fit(np.eye(3), np.diag([1.0, 1.0, 1.0]), NAMES)
    assert (np.diag(lone.features(np.eye(3), leave_self_out=True)) == 0).all()


def test_repeat_blocks_are_a_repeats_own_means_and_whether_there_is_one():
    rng = np.random.default_rng(5)
    Es = rng.normal(size=(40, 8))
    Es[30:36] = Es[:6] * 2.0  # rows 30..35 repeat rows 0..5 (same direction)
    Es[36] = Es[0] * 0.5      # a third copy of row 0
    Q = rng.random((40, 3))
    Q[rng.random((40, 3)) < 0.3] = np.nan
    m = OutcomeMemory((4, 10), duplicates=0.999).fit(Es, Q, NAMES)
    assert m.out_dim == 12

    def brute(Eq, exclude=None):
        U, V = _unit(Es), _unit(Eq)
        r, h = np.zeros((len(Eq), 3)), np.zeros((len(Eq), 3))
        for i, e in enumerate(V):
            rows = [j for j in np.flatnonzero(U @ e >= 0.999)
                    if exclude is None or j != exclude[i]]
            for c in range(3):
                seen = [Q[j, c] for j in rows if not np.isnan(Q[j, c])]
                if seen:
                    r[i, c], h[i, c] = np.mean(seen), 1.0
        return np.hstack([r, h])

    Eq = np.vstack([Es[:8] * 3.0, rng.normal(size=(3, 8))])
    got = m.features(Eq)
    np.testing.assert_allclose(got[:, :3], _brute(Eq, Es, Q, 4), atol=1e-12)
    np.testing.assert_allclose(got[:, 6:], brute(Eq), atol=1e-12)
    assert got[:8, 9:].sum() > 0 and (got[8:, 6:] == 0).all()  # prompts never seen: 0
    self_out = m.features(Es, leave_self_out=True)
    np.testing.assert_allclose(self_out[:, 6:], brute(Es, np.arange(40)), atol=1e-12)
    assert (self_out[6:30, 6:] == 0).all()  # rows with no other copy
    # feedback on a stored prompt enters its repeat blocks
    m.observe(Es[7], "a", 1.0)
    f = m.features(Es[7:8] * 2.0)
    want = 1.0 if np.isnan(Q[7, 0]) else (Q[7, 0] + 1.0) / 2
    np.testing.assert_allclose(f[0, [6, 9]], [want, 1.0], atol=1e-12)
    with pytest.raises(ValueError):
        OutcomeMemory((4,), duplicates=1.5)


def test_observe_adds_to_the_same_prompt_or_stores_a_new_one():
    m = OutcomeMemory((1,), duplicates=None).fit(
        np.eye(4)[:2], np.array([[1.0, np.nan, 0.0], [0.0, 0.0, 0.0]]), NAMES)
    m.observe(np.array([2.0, 0, 0, 0]), "b", 1.0)  # same direction as row 0: the same prompt
    assert len(m) == 2
    np.testing.assert_allclose(m.features(np.eye(4)[:1])[0], [1.0, 1.0, 0.0])
    m.observe(np.eye(4)[2], "c", 0.5)  # a new prompt
    assert len(m) == 3
    np.testing.assert_allclose(m.features(np.eye(4)[2:3])[0, 2], 0.5)
    m.observe(np.eye(4)[2], "c", 1.0)  # repeated feedback averages
    np.testing.assert_allclose(m.features(np.eye(4)[2:3])[0, 2], 0.75)
    for _ in range(40):  # growth keeps everything
        m.observe(np.random.default_rng(len(m)).normal(size=4), "a", 0.0)
    assert len(m) == 43
    with pytest.raises(KeyError):
        m.observe(np.eye(4)[0], "zz", 1.0)
    for bad in (np.nan, "x", True):
        with pytest.raises(ValueError):
            m.observe(np.eye(4)[0], "a", bad)
    with pytest.raises(ValueError):
        m.observe(np.ones(3), "a", 1.0)
    assert len(m) == 43  # refused inputs change nothing


def test_memory_round_trip_and_damage():
    rng = np.random.default_rng(1)
    m = OutcomeMemory((2, 3)).fit(rng.normal(size=(10, 4)), rng.random((10, 3)), NAMES)
    m.observe(rng.normal(size=4), "c", 0.25)
    back = OutcomeMemory.from_bytes(m.to_bytes())
    q = rng.normal(size=(5, 4))
    np.testing.assert_array_equal(back.features(q), m.features(q))
    assert back.llms == NAMES and back.ks == (2, 3) and len(back) == 11
    assert back.duplicates == m.duplicates == 0.995
    raw = bytearray(m.to_bytes())
    raw[len(raw) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        OutcomeMemory.from_bytes(bytes(raw), "damaged")
    with pytest.raises(ValueError):
        OutcomeMemory.from_bytes(b"nope")


def test_a_version_1_memory_loads_without_repeat_blocks():
    from mixllm._io import pack_checked

    rng = np.random.default_rng(4)
    E = rng.normal(size=(6, 4)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    S = rng.random((6, 3))
    raw = pack_checked({"format": "mixllm-outcome-memory", "version": 1, "ks": [2],
                        "llms": NAMES}, {"E": E, "S": S, "C": np.ones((6, 3))})
    old = OutcomeMemory.from_bytes(raw, "v1")
    assert old.duplicates is None and old.out_dim == 3
    np.testing.assert_allclose(old.features(E[:1] * 2.0),
                               OutcomeMemory((2,), None).fit(E, S, NAMES).features(E[:1]))


def test_memory_input_checks():
    for ks in ((), (0,), (2.5,), [True]):
        with pytest.raises(ValueError):
            OutcomeMemory(ks)
    with pytest.raises(ValueError):
        OutcomeMemory().features(np.ones((1, 3)))  # empty
    m = OutcomeMemory()
    for E, Q, names in ((np.ones((2, 3)), np.ones((3, 3)), NAMES),
                        (np.ones((2, 3)), np.ones((2, 3)), ["a", "a", "b"]),
                        (np.full((2, 3), np.nan), np.ones((2, 3)), NAMES),
                        (np.ones((2, 3)), np.full((2, 3), np.inf), NAMES)):
        with pytest.raises(ValueError):
            m.fit(E, Q, names)
    assert not m.fitted


def test_ridge_path_is_the_routers_ridge():
    rng = np.random.default_rng(2)
    F = rng.normal(size=(50, 5))
    Y = rng.normal(size=(50, 3))
    Y[:10, 1] = np.nan
    for r, W in ridge_path(F, Y, (0.5, 7.0)).items():
        for t in range(3):
            seen = ~np.isnan(Y[:, t])
            Z = np.hstack([F[seen], np.ones((seen.sum(), 1))])
            want = np.linalg.solve(Z.T @ Z + r * np.eye(6), Z.T @ Y[seen, t])
            np.testing.assert_allclose(W[:, t], want, atol=1e-10)


def _clustered(n=240, seed=0):
    """Prompts in 4 topics; which LLM is good depends on the topic, which only the
    neighbourhood (not a linear map of the hashed text) tells."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, 16))
    E = centres[topics] + 0.3 * rng.normal(size=(n, 16))
    rates = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5], [0.9, 0.9, 0.1], [0.1, 0.1, 0.9]])
    Q = (rng.random((n, 3)) < rates[topics]).astype(float)
    return E, Q, np.full((n, 3), 20.0), topics


def test_choose_prefers_neighbours_where_they_carry_the_signal():
    E, Q, T, _ = _clustered()
    tr = TextRouter([LLM(n, 1.0, 1.0) for n in NAMES], PipelineConfig(tags=False))
    tr.fit(E, Q, T, None)
    sel = tr.selection
    assert set(sel["mse"]) == {"embedding", "neighbours"}  # tags=False drops the tag maps
    assert sel["features"] == tr.feature_map == "neighbours"
    best = min(v for m in sel["mse"].values() for v in m.values())
    assert sel["mse"][sel["features"]][f"{sel['ridge']:g}"] == best
    assert tr.router.dim == 16 + 4 * 3  # the embedding, two neighbour blocks, two repeat blocks


def test_fixed_settings_skip_the_choice_and_bad_settings_are_refused():
    E, Q, T, topics = _clustered(80)
    tr = TextRouter([LLM(n, 1.0, 1.0) for n in NAMES],
                    PipelineConfig(features="tags", ridge=3.0))
    tr.fit(E, Q, T, [f"t{t}" for t in topics])
    assert tr.selection == {"features": "tags", "ridge": 3.0}
    assert tr.router.ridge == 3.0 and tr.memory is None
    for bad in ({"features": "nope"}, {"ridge": 0.0}, {"ridge": float("nan")},
                {"neighbours": ()}, {"neighbours": (0,)}):
        with pytest.raises(ValueError):
            PipelineConfig(**bad)
    assert PipelineConfig.from_json({"tags": False}).features == "embedding"  # older saves
    assert set(FEATURE_MAPS) == set(PipelineConfig().candidates()[0])


def test_text_router_with_neighbours_learns_saves_and_loads(tmp_path):
    enc = HashEncoder()
    rng = np.random.default_rng(3)
    words = [["sum", "integer", "divide"], ["python", "function", "list"]]
    prompts = [" ".join(rng.choice(words[i % 2], 4)) + f" {i}" for i in range(120)]
    Q = np.array([[1.0, 0.0, 0.5] if i % 2 else [0.0, 1.0, 0.5] for i in range(120)])
    pool = [LLM(n, 1.0, 1.0) for n in NAMES]
    tr = TextRouter(pool, PipelineConfig(features="neighbours", ridge=1.0), enc)
    E = tr.embed(prompts)
    tr.fit(E, Q, np.full((120, 3), 10.0), None)
    assert tr.feature_map == "neighbours" and len(tr.memory) == 120
    d = tr.route("python list function")
    assert d.llm == "a"
    n_obs = tr.router.n_observations()["c"]
    tr.feedback("a prompt never seen", "c", 1.0, 12.0)
    assert len(tr.memory) == 121 and tr.router.n_observations()["c"] == n_obs + 1
    tr.save(tmp_path / "st")
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "st").glob("*.npz")) == [
        "memory", "router"]
    back = TextRouter.load(tmp_path / "st", encoder=enc)
    assert back.feature_map == "neighbours" and len(back.memory) == 121
    assert back.route("python list function") == tr.route("python list function")
    # an LLM added later learns through its head; the memory keeps its columns
    back.router.add_llm(LLM("d", 0.1, 0.1))
    back.feedback("sum integer divide", "d", 1.0, 5.0)
    assert back.memory.llms == NAMES
