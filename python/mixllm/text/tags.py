"""Tag-enhanced query features (MixLLM component 1), as a learned transform on a frozen encoder.

The MixLLM paper tags every training query (InsTag), groups the tags into domains, and
fine-tunes the encoder so that queries sit near their domain's centroid and domain centroids
lie far apart. mixllm keeps the encoder frozen and learns a light linear transform on top of
it, trained from the tags the data carries (task names, subjects, user tags) and from the
observed per-LLM qualities:

``domain`` block
    Probabilities of each domain from a multinomial logistic classifier on the embedding, so
    that unseen queries get a soft domain assignment at routing time. Queries without tags can
    be given k-means cluster ids as domains (:func:`cluster_domains`).
``centroid`` block (optional)
    The linear map that maximises the spread of domain centroids against the spread of queries
    around their own centroid (the Fisher/LDA solution of the paper's intra-domain
    compactness + inter-domain separation objective).
``strength`` block
    A reduced-rank ridge projection: the ``rank`` directions of the embedding that best
    predict how each LLM's quality departs from its domain average, i.e. the directions along
    which LLM strengths separate.

Training rows are transformed with cross-fitting (each fold by a transform fitted without it),
so that the per-LLM predictors downstream see features as noisy as the ones they will get at
routing time. Applying the transform costs one small matrix product per query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, pack_checked, unpack_checked

__all__ = ["TagTransform", "cluster_domains"]

_FORMAT = "mixllm-tag-transform"
_VERSION = 1


def cluster_domains(E: np.ndarray, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Domain labels for untagged queries: k-means clusters of their embeddings (as strings)."""
    from sklearn.cluster import KMeans

    E = _check_embeddings(E)
    if not (isinstance(n_clusters, int) and 1 <= n_clusters <= len(E)):
        raise ValueError(f"n_clusters must be an int in [1, {len(E)}], got {n_clusters!r}")
    labels = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(E)
    return np.array([f"cluster-{c}" for c in labels])


def _check_embeddings(E: Any, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(E)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"embeddings must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-d array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"embeddings must have {dim} columns, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError("embeddings contain NaN or inf")
    return arr


@dataclass
class _Fitted:
    domains: list[str]
    mu: np.ndarray            # (d,)  embedding mean
    W_dom: np.ndarray         # (d, D) domain classifier weights
    b_dom: np.ndarray         # (D,)
    P_cen: np.ndarray         # (d, c) centroid (LDA) projection
    P_str: np.ndarray         # (d, r) strength projection


class TagTransform:
    """Learned domain-aware features on top of frozen embeddings.

    Parameters
    ----------
    rank : int
        Dimensions of the ``strength`` block (0 disables it).
    centroid_dims : int
        Dimensions of the ``centroid`` (LDA) block (0 disables it; at most domains - 1).
    keep_embedding : bool
        Append the raw embedding to the features.
    interactions : bool
        Also append the strength coordinates times each domain probability, so that the
        per-LLM predictors can weigh the strength directions differently in each domain.
    alpha : float
        Ridge strength of the strength projection (> 0).
    domain_c : float
        Inverse regularisation of the domain classifier (> 0).
    crossfit : int
        Folds used to transform the training rows (>= 2), or 0 to transform them in-sample.
    seed : int
        Seed of the folds and the classifier.
    """

    def __init__(self, rank: int = 4, centroid_dims: int = 0, keep_embedding: bool = False,
                 interactions: bool = False, alpha: float = 10.0, domain_c: float = 10.0, crossfit: int = 5,
                 seed: int = 0) -> None:
        for name, v, low in (("rank", rank, 0), ("centroid_dims", centroid_dims, 0),
                             ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if isinstance(crossfit, bool) or not isinstance(crossfit, int) or crossfit == 1 \
                or crossfit < 0:
            raise ValueError(f"crossfit must be 0 or an int >= 2, got {crossfit!r}")
        for name, v in (("alpha", alpha), ("domain_c", domain_c)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        self.rank = rank
        self.centroid_dims = centroid_dims
        self.keep_embedding = bool(keep_embedding)
        self.interactions = bool(interactions)
        self.alpha = float(alpha)
        self.domain_c = float(domain_c)
        self.crossfit = crossfit
        self.seed = seed
        self._fit: _Fitted | None = None
        self.dim: int | None = None

    # ------------------------------------------------------------------ fitting
    @property
    def fitted(self) -> bool:
        return self._fit is not None

    @property
    def domains(self) -> list[str]:
        """Domain names, in the order of the ``domain`` block."""
        return list(self._require().domains)

    @property
    def out_dim(self) -> int:
        """Width of the features :meth:`transform` returns."""
        f = self._require()
        return self._width(f) + (f.mu.shape[0] if self.keep_embedding else 0)

    def _require(self) -> _Fitted:
        if self._fit is None:
            raise ValueError("TagTransform is not fitted: call fit() first")
        return self._fit

    def _validate(self, E, domains, quality):
        E = _check_embeddings(E)
        doms = np.asarray([str(d) for d in domains]) if domains is not None else None
        if doms is None or doms.shape != (len(E),):
            raise ValueError(f"domains must be a sequence of {len(E)} labels")
        if quality is not None:
            q = np.asarray(quality, dtype=np.float64)
            if q.ndim != 2 or q.shape[0] != len(E):
                raise ValueError(f"quality must have shape ({len(E)}, K), got {q.shape}")
            if np.isinf(q).any():
                raise ValueError("quality must not contain inf (NaN = not observed)")
        else:
            q = None
        return E, doms, q

    def _fit_arrays(self, E: np.ndarray, doms: np.ndarray, q: np.ndarray | None) -> _Fitted:
        from sklearn.linear_model import LogisticRegression

        d = E.shape[1]
        names = sorted(set(doms.tolist()))
        mu = E.mean(axis=0)
        Ec = E - mu
        D = len(names)
        if D >= 2:
            clf = LogisticRegression(C=self.domain_c, max_iter=2000, random_state=self.seed)
            clf.fit(Ec, doms)
            order = [list(clf.classes_).index(n) for n in names]
            if D == 2:  # sklearn stores one row for binary problems: expand to both classes
                W = np.stack([-clf.coef_[0], clf.coef_[0]], axis=1) / 2.0
                b = np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2.0
            else:
                W, b = clf.coef_.T[:, order], clf.intercept_[order]
        else:
            W, b = np.zeros((d, 1)), np.zeros(1)
        # Centroid block: generalised eigenvectors of between- vs within-domain scatter.
        c = min(self.centroid_dims, max(D - 1, 0))
        if c > 0:
            Sw = np.zeros((d, d))
            Sb = np.zeros((d, d))
            for n in names:
                Xi = Ec[doms == n]
                m = Xi.mean(axis=0)
                Sw += (Xi - m).T @ (Xi - m)
                Sb += len(Xi) * np.outer(m, m)
            Sw /= len(E)
            Sb /= len(E)
            Sw += 1e-3 * np.trace(Sw) / d * np.eye(d)
            L = np.linalg.cholesky(Sw)
            Linv = np.linalg.inv(L)
            vals, vecs = np.linalg.eigh(Linv @ Sb @ Linv.T)
            P_cen = Linv.T @ vecs[:, ::-1][:, :c]
        else:
            P_cen = np.zeros((d, 0))
        # Strength block: reduced-rank ridge of quality residuals (after domain means).
        r = self.rank if q is not None else 0
        if r > 0:
            Y = q.copy()
            for n in names:
                rows = doms == n
                with np.errstate(all="ignore"):
                    col_mean = np.nanmean(Y[rows], axis=0)
                Y[rows] -= np.nan_to_num(col_mean)
            Y = np.nan_to_num(Y)  # an unobserved pair carries no residual
            B = np.linalg.solve(Ec.T @ Ec + self.alpha * np.eye(d), Ec.T @ Y)
            _, _, Vt = np.linalg.svd(Ec @ B, full_matrices=False)
            P_str = B @ Vt[: min(r, Vt.shape[0])].T
        else:
            P_str = np.zeros((d, 0))
        return _Fitted(names, mu, W, b, P_cen, P_str)

    def fit(self, E: Any, domains: Sequence[str], quality: Any | None = None) -> "TagTransform":
        """Fit on embeddings ``E`` (n, d), their domain labels, and per-LLM quality (n, K).

        ``quality`` (NaN = not observed) trains the strength block; without it only the domain
        and centroid blocks are learned.
        """
        E, doms, q = self._validate(E, domains, quality)
        self._fit = self._fit_arrays(E, doms, q)
        self.dim = E.shape[1]
        return self

    def fit_transform(self, E: Any, domains: Sequence[str], quality: Any | None = None
                      ) -> np.ndarray:
        """Fit, and return cross-fitted features for the training rows themselves."""
        E, doms, q = self._validate(E, domains, quality)
        full = self._fit_arrays(E, doms, q)
        if self.crossfit == 0 or len(E) < 2 * self.crossfit:
            self._fit, self.dim = full, E.shape[1]
            return self.transform(E)
        out = np.zeros((len(E), self._width(full)))
        rng = np.random.default_rng(self.seed)
        folds = np.array_split(rng.permutation(len(E)), self.crossfit)
        for held in folds:
            keep = np.setdiff1d(np.arange(len(E)), held)
            part = self._fit_arrays(E[keep], doms[keep], None if q is None else q[keep])
            # A fold may miss a domain, and its projections are defined up to rotation and
            # sign: map its features onto the full fit's by least squares on the kept rows.
            Fk = self._apply(part, E[keep])
            Ff = self._apply(full, E[keep])
            M, *_ = np.linalg.lstsq(np.hstack([Fk, np.ones((len(keep), 1))]), Ff, rcond=None)
            out[held] = np.hstack([self._apply(part, E[held]), np.ones((len(held), 1))]) @ M
        self._fit, self.dim = full, E.shape[1]
        if self.keep_embedding:
            return np.hstack([out, E])
        return out

    # ------------------------------------------------------------------ applying
    def _width(self, f: _Fitted) -> int:
        D, r = len(f.domains), f.P_str.shape[1]
        return D + f.P_cen.shape[1] + r + (D * r if self.interactions else 0)

    def _apply(self, f: _Fitted, E: np.ndarray) -> np.ndarray:
        Ec = E - f.mu
        logits = Ec @ f.W_dom + f.b_dom
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        s = Ec @ f.P_str
        blocks = [p, Ec @ f.P_cen, s]
        if self.interactions:
            blocks.append((p[:, :, None] * s[:, None, :]).reshape(len(E), -1))
        return np.hstack(blocks)

    def transform(self, E: Any) -> np.ndarray:
        """Features for embeddings ``E`` (n, d): domain probabilities, centroid and strength
        coordinates, and the embedding itself if ``keep_embedding``."""
        f = self._require()
        E = _check_embeddings(E, f.mu.shape[0])
        out = self._apply(f, E)
        return np.hstack([out, E]) if self.keep_embedding else out

    def domain_proba(self, E: Any) -> np.ndarray:
        """Probability of each domain (columns in :attr:`domains` order)."""
        f = self._require()
        E = _check_embeddings(E, f.mu.shape[0])
        return self._apply(f, E)[:, : len(f.domains)]

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        return {"rank": self.rank, "centroid_dims": self.centroid_dims,
                "keep_embedding": self.keep_embedding, "interactions": self.interactions,
                "alpha": self.alpha,
                "domain_c": self.domain_c, "crossfit": self.crossfit, "seed": self.seed}

    def to_bytes(self) -> bytes:
        """Serialise (``.npz`` arrays + JSON manifest with sha256 per array; no pickle)."""
        f = self._require()
        arrays = {"mu": f.mu, "W_dom": f.W_dom, "b_dom": f.b_dom, "P_cen": f.P_cen,
                  "P_str": f.P_str}
        manifest = {"format": _FORMAT, "version": _VERSION, "params": self._params(),
                    "domains": f.domains}
        return pack_checked(manifest, arrays)

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "<bytes>") -> "TagTransform":
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` naming ``source`` if bad."""
        manifest, data = unpack_checked(raw, source, "mixllm tag transform", format=_FORMAT,
                                        versions=(_VERSION,))
        # The manifest itself is not checksummed: check what it says against the arrays.
        try:
            params, domains = manifest["params"], manifest["domains"]
            if not isinstance(params, dict) or not isinstance(domains, list) \
                    or not all(isinstance(d, str) for d in domains):
                raise ValueError("params must be an object and domains a list of str")
            t = cls(**params)
            f = _Fitted(list(domains), data["mu"], data["W_dom"], data["b_dom"], data["P_cen"],
                        data["P_str"])
            d, D = f.mu.shape[0] if f.mu.ndim == 1 else -1, len(f.domains)
            want = {"mu": (d,), "W_dom": (d, D), "b_dom": (D,)}
            for k, shape in want.items():
                if getattr(f, k).shape != shape:
                    raise ValueError(f"array {k} has shape {getattr(f, k).shape}, expected {shape}")
            if any(a.ndim != 2 or a.shape[0] != d or a.dtype.kind != "f"
                   for a in (f.W_dom, f.P_cen, f.P_str)) or f.mu.dtype.kind != "f":
                raise ValueError("projection arrays of the wrong shape or type")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid tag transform ({exc})") from exc
        t._fit = f
        t.dim = int(d)
        return t

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path`` atomically."""
        atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "TagTransform":
        return cls.from_bytes(Path(path).read_bytes(), str(path))
