"""The tag-enhanced transform on synthetic data with planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm.text.tags import TagTransform, cluster_domains


def _planted(rng, n=600, d=24, k=3):
    """Three domains with separated centroids; LLM 0 is better where x . v > 0."""
    names = np.array(["code", "math", "trivia"])
    doms = names[rng.integers(0, 3, n)]
    centres = {nm: 2.0 * rng.normal(size=d) for nm in names}
    E = np.stack([centres[dm] for dm in doms]) + rng.normal(size=(n, d))
    v = np.zeros(d)
    v[5] = 1.0
    base = {"code": [0.6, 0.5, 0.4], "math": [0.3, 0.7, 0.5], "trivia": [0.8, 0.8, 0.2]}
    Q = np.stack([base[dm] for dm in doms]).astype(float)
    Q[:, 0] += 0.3 * np.tanh(E @ v)
    Q += 0.05 * rng.normal(size=Q.shape)
    return E, doms, Q, v


def test_domain_block_classifies_and_sums_to_one(rng):
    E, doms, Q, _ = _planted(rng)
    t = TagTransform(rank=2).fit(E[:400], doms[:400], Q[:400])
    p = t.domain_proba(E[400:])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    pred = np.array(t.domains)[p.argmax(axis=1)]
    assert (pred == doms[400:]).mean() > 0.95


def test_strength_block_finds_the_direction_where_llms_differ(rng):
    E, doms, Q, v = _planted(rng)
    t = TagTransform(rank=1, alpha=1.0).fit(E, doms, Q)
    P = t._fit.P_str[:, 0]
    cos = abs(P @ v) / np.linalg.norm(P)
    assert cos > 0.8


def test_centroid_block_separates_domains(rng):
    E, doms, Q, _ = _planted(rng, d=40)
    t = TagTransform(rank=0, centroid_dims=2).fit(E, doms)
    Z = t.transform(E)[:, 3:5]

    def ratio(X):
        cents = {dm: X[doms == dm].mean(axis=0) for dm in set(doms)}
        within = np.mean([np.sum((x - cents[dm]) ** 2) for x, dm in zip(X, doms)])
        grand = X.mean(axis=0)
        between = np.mean([np.sum((c - grand) ** 2) for c in cents.values()])
        return between / within

    # Fisher directions beat a random 2-d projection on the compactness/separation ratio.
    R = rng.normal(size=(40, 2))
    assert ratio(Z) > 2 * ratio(E @ R)


def test_crossfit_features_are_noisier_than_in_sample_and_shaped(rng):
    E, doms, Q, _ = _planted(rng)
    t = TagTransform(rank=3, crossfit=5)
    F = t.fit_transform(E, doms, Q)
    assert F.shape == (len(E), t.out_dim) == (len(E), 3 + 3)
    F_in = t.transform(E)
    assert not np.allclose(F, F_in)
    # but they agree closely: cross-fitted features track the full fit
    assert np.corrcoef(F[:, 3], F_in[:, 3])[0, 1] > 0.8


def test_keep_embedding_appends_raw(rng):
    E, doms, Q, _ = _planted(rng, n=100)
    t = TagTransform(rank=1, keep_embedding=True, crossfit=0)
    F = t.fit_transform(E, doms, Q)
    np.testing.assert_allclose(F[:, -E.shape[1]:], E)


def test_save_load_round_trip_and_tamper(tmp_path, rng):
    E, doms, Q, _ = _planted(rng, n=200)
    t = TagTransform(rank=2, centroid_dims=1).fit(E, doms, Q)
    path = tmp_path / "t.npz"
    t.save(path)
    u = TagTransform.load(path)
    np.testing.assert_array_equal(u.transform(E), t.transform(E))
    assert u.domains == t.domains and u.out_dim == t.out_dim
    raw = bytearray(path.read_bytes())
    raw[300] ^= 0xFF
    with pytest.raises(ValueError):
        TagTransform.from_bytes(bytes(raw))


def test_single_domain_and_untagged_clusters(rng):
    E, doms, Q, _ = _planted(rng, n=150)
    t = TagTransform(rank=2).fit(E, ["all"] * len(E), Q)
    assert t.transform(E).shape == (150, 1 + 2)
    labels = cluster_domains(E, n_clusters=3)
    assert len(set(labels)) == 3
    # clusters recover the planted domains (up to naming)
    pairs = {(a, b) for a, b in zip(labels, doms)}
    assert len(pairs) <= 5


@pytest.mark.parametrize("kwargs", [{"rank": -1}, {"crossfit": 1}, {"alpha": 0.0},
                                    {"domain_c": float("nan")}, {"rank": 1.5}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        TagTransform(**kwargs)


def test_bad_inputs(rng):
    E, doms, Q, _ = _planted(rng, n=60)
    with pytest.raises(ValueError, match="not fitted"):
        TagTransform().transform(E)
    with pytest.raises(ValueError):
        TagTransform().fit(E, doms[:-1], Q)
    with pytest.raises(ValueError):
        TagTransform().fit(E[:, :, None], doms, Q)
    bad = E.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        TagTransform().fit(bad, doms, Q)
    t = TagTransform(rank=1).fit(E, doms, Q)
    with pytest.raises(ValueError):
        t.transform(E[:, :5])
    with pytest.raises(ValueError):
        TagTransform().fit(E, doms, np.full_like(Q, np.inf))
