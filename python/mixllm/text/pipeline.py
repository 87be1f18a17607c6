"""Text in, decision out: the encoder, the prompt view, the tag transform and the router.

:class:`TextRouter` is what ``mixllm fit`` saves and ``mixllm route`` loads. It owns the
choices that turn a prompt into the router's features:

* the *view* of the prompt that is embedded (``"last_block"`` by default: few-shot prompts put
  the question actually asked in their last blank-line-separated block, and an encoder that
  truncates a long prompt on the right would otherwise see only the worked examples);
* the frozen encoder (any :class:`mixllm.text.encoder.Encoder`; MiniLM by default);
* the learned tag-enhanced transform (:class:`mixllm.text.tags.TagTransform`), switchable off;
* the :class:`mixllm.router.Router` over the LLM pool.

:meth:`TextRouter.decide` is the one path from text to decision: the CLI, the proxy and its
Ray replicas all take it, and it returns the features, the input token count and the view's
embedding with the decision, so that a later feedback (:meth:`TextRouter.learn`) learns on
exactly what was routed, in the router and in the outcome memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, fsync_dir
from ..router import Router
from ..types import LLM, Decision
from .encoder import Encoder
from .neighbours import OutcomeMemory
from .selection import FEATURE_MAPS, RIDGES, blocks_of, choose
from .tags import TagTransform, cluster_domains

__all__ = ["PipelineConfig", "TextDecision", "TextRouter", "prompt_view", "domain_labels", "VIEWS"]

VIEWS = ("full", "last_block", "first_last")
_FORMAT = "mixllm-text-router"
_VERSION = 2  # 2: content-addressed data files named by the manifest (the commit point)
_READABLE_VERSIONS = (1, 2)


def prompt_view(text: str, view: str = "last_block") -> str:
    """The part of a prompt that is embedded.

    ``"full"``: the whole prompt. ``"last_block"``: its last non-empty blank-line-separated
    block (the whole prompt when it has one block). ``"first_last"``: the first and the last
    block joined by a blank line (the task's framing and the question).
    """
    return _view_and_rest(text, view)[0]


def _view_and_rest(text: str, view: str) -> tuple[str, str]:
    """:func:`prompt_view` and the prompt's other blocks, joined by blank lines.

    The two are cut from the prompt at blank lines, with only whitespace between them and
    around them left out: under an encoder with ``additive_counts``
    (:func:`mixllm.text.tokens.counts_add_at_line_breaks`) their token counts add up to the
    prompt's, so the view's count and the rest's count it once.
    """
    if not isinstance(text, str):
        raise ValueError(f"prompt must be str, got {type(text).__name__}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view == "full":
        return text, ""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return text.strip(), ""
    if view == "last_block" or len(blocks) == 1:
        return blocks[-1], "\n\n".join(blocks[:-1])
    return blocks[0] + "\n\n" + blocks[-1], "\n\n".join(blocks[1:-1])


def domain_labels(task: Sequence[str], tags: Sequence[Sequence[str]] | None = None
                  ) -> np.ndarray | None:
    """One domain per prompt: its task, else its first tag; ``None`` if nothing is tagged."""
    out = []
    for i, t in enumerate(task):
        if t:
            out.append(str(t))
        elif tags is not None and len(tags[i]) > 0:
            out.append(str(tags[i][0]))
        else:
            out.append("")
    if all(o == "" for o in out):
        return None
    return np.array([o if o else "untagged" for o in out])


@dataclass(frozen=True)
class PipelineConfig:
    """How prompts become features and how the router scores them.

    Parameters
    ----------
    view : {"full", "last_block", "first_last"}
        Part of the prompt that is embedded (see :func:`prompt_view`).
    features : {"auto", "tags", "embedding", "neighbours", "tags+neighbours"}
        The router's feature map (see :mod:`mixllm.text.selection`); ``"auto"`` (default)
        chooses it in :meth:`TextRouter.fit` by cross-validation on the training rows.
    tags : bool
        Allow the tag-enhanced transform; ``False`` replaces it by the embedding itself
        (``"tags"`` becomes ``"embedding"``, ``"tags+neighbours"`` becomes ``"neighbours"``).
    neighbours : tuple of int
        Neighbourhood sizes of the neighbour-mean features
        (:class:`~mixllm.text.neighbours.OutcomeMemory`).
    duplicates : float or None
        Cosine similarity from which a stored prompt is the same prompt: the neighbour
        features then carry a repeat block (what the LLMs scored on that prompt before);
        ``None`` leaves it out.
    tag_rank, centroid_dims, keep_embedding, interactions, tag_alpha :
        :class:`~mixllm.text.tags.TagTransform` settings.
    n_clusters : int
        Domains made by k-means when the training data carries no task or tags.
    alpha, beta, tau, ridge, lam, cold_ridge :
        :class:`~mixllm.router.Router` settings. ``ridge=None`` (default) chooses the ridge
        strength in :meth:`TextRouter.fit` with the feature map, among
        :data:`~mixllm.text.selection.RIDGES`.
    """

    view: str = "last_block"
    features: str = "auto"
    tags: bool = True
    neighbours: tuple[int, ...] = (10, 50)
    duplicates: float | None = 0.995
    tag_rank: int = 4
    centroid_dims: int = 0
    keep_embedding: bool = False
    interactions: bool = False
    tag_alpha: float = 10.0
    n_clusters: int = 20
    alpha: float = 0.0
    beta: float = 0.0
    tau: float = math.inf
    ridge: float | None = None
    lam: float = math.inf
    cold_ridge: float | None = None

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, int) \
                or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be an int >= 1, got {self.n_clusters!r}")
        if self.features != "auto" and self.features not in FEATURE_MAPS:
            raise ValueError(f"features must be 'auto' or one of {FEATURE_MAPS}, "
                             f"got {self.features!r}")
        ks = tuple(self.neighbours) if isinstance(self.neighbours, (list, tuple)) else None
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"neighbours must be a non-empty sequence of ints >= 1, "
                             f"got {self.neighbours!r}")
        object.__setattr__(self, "neighbours", ks)
        if self.duplicates is not None and (isinstance(self.duplicates, bool) or not isinstance(
                self.duplicates, (int, float)) or not -1.0 < self.duplicates <= 1.0):
            raise ValueError(f"duplicates must be None or a cosine similarity in (-1, 1], "
                             f"got {self.duplicates!r}")
        if self.ridge is not None and (isinstance(self.ridge, bool) or not isinstance(
                self.ridge, (int, float)) or not math.isfinite(self.ridge) or self.ridge <= 0):
            raise ValueError(f"ridge must be None (chosen in fit) or a finite number > 0, "
                             f"got {self.ridge!r}")

    def candidates(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """The feature maps and ridge strengths :meth:`TextRouter.fit` chooses among."""
        kinds = FEATURE_MAPS if self.features == "auto" else (self.features,)
        if not self.tags:
            plain = {"tags": "embedding", "tags+neighbours": "neighbours"}
            kinds = tuple(dict.fromkeys(plain.get(k, k) for k in kinds))
        ridges = RIDGES if self.ridge is None else (float(self.ridge),)
        return kinds, ridges

    def to_json(self) -> dict[str, Any]:
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PipelineConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown pipeline settings: {sorted(unknown)}")
        d = dict(d)
        if "features" not in d:  # saved before the feature map was a setting
            d["features"] = "tags" if d.get("tags", True) else "embedding"
        if isinstance(d.get("neighbours"), list):
            d["neighbours"] = tuple(d["neighbours"])
        return cls(**{k: (float(v) if k in ("tau", "lam") else v) for k, v in d.items()})


@dataclass(frozen=True)
class TextDecision:
    """A decision on a prompt, with what it was taken on.

    Attributes
    ----------
    decision : Decision
        The router's decision.
    features : ndarray (d,) float64
        The router features of the prompt (what :meth:`Router.feedback` learns on).
    input_tokens : float
        The prompt's tokens, as priced in the decision.
    embedding : ndarray (dim,) float32 or None
        The encoder's embedding of the prompt's view (what the outcome memory of neighbour
        features stores an outcome at); :meth:`TextRouter.learn` takes it back.
    """

    decision: Decision
    features: np.ndarray
    input_tokens: float
    embedding: np.ndarray | None = None


@dataclass
class TextRouter:
    """Encoder + view + tag transform + router: route raw prompt text.

    Build one with :meth:`fit_data` (or :meth:`fit` on precomputed embeddings), use
    :meth:`route` / :meth:`feedback` on text, and :meth:`save` / :meth:`load` a folder.
    """

    pool: list[LLM]
    config: PipelineConfig = field(default_factory=PipelineConfig)
    encoder: Encoder | None = None
    transform: TagTransform | None = None
    router: Router | None = None
    memory: OutcomeMemory | None = None
    feature_map: str | None = None
    selection: dict[str, Any] | None = None
    # The outcome memory's reads (features, save) and writes (learn) are taken one at a time:
    # the proxy learns in one thread while it routes in others.
    _memory_lock: threading.Lock = field(default_factory=threading.Lock, init=False,
                                         repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.encoder is not None and not isinstance(self.encoder, Encoder):
            raise TypeError(f"encoder must be a mixllm.text.encoder.Encoder (encode, "
                            f"count_tokens, encode_with_counts, dim, identity, max_length, "
                            f"model_sha256), got {type(self.encoder).__name__}")
        if self.feature_map is None and self.router is not None:
            # a router built before the feature map was recorded: tags or the embedding
            self.feature_map = "tags" if self.transform is not None else "embedding"

    def _encoder(self) -> Encoder:
        if self.encoder is None:
            from .onnx import OnnxEncoder, default_cache_dir

            # The user's embedding cache, as on the command line: fitting the same prompts
            # again does not embed them again.
            self.encoder = OnnxEncoder(cache_dir=default_cache_dir())
        return self.encoder

    def embed(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embeddings of the configured view of each prompt, (n, dim) float32."""
        texts = [prompt_view(p, self.config.view) for p in prompts]
        return self._encoder().encode(texts, progress=progress)

    def features(self, E: np.ndarray) -> np.ndarray:
        """Router features for embeddings ``E``: the blocks of the fitted feature map."""
        E = np.asarray(E, dtype=np.float64)
        kind = self.feature_map or ("tags" if self.transform is not None else "embedding")
        out = []
        for b in blocks_of(kind):
            if b == "embedding":
                out.append(E)
            elif b == "tags":
                if self.transform is None:
                    raise ValueError("TextRouter is not fitted")
                out.append(self.transform.transform(E))
            else:
                if self.memory is None:
                    raise ValueError("TextRouter is not fitted")
                with self._memory_lock:
                    out.append(self.memory.features(E))
        return out[0] if len(out) == 1 else np.hstack(out)

    def _new_transform(self) -> TagTransform:
        cfg = self.config
        return TagTransform(rank=cfg.tag_rank, centroid_dims=cfg.centroid_dims,
                            keep_embedding=cfg.keep_embedding, interactions=cfg.interactions,
                            alpha=cfg.tag_alpha)

    def _blocks(self, E: np.ndarray, quality: np.ndarray, domains: np.ndarray | None,
                need: Sequence[str], held: np.ndarray | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], TagTransform | None,
                           OutcomeMemory | None]:
        """Each needed block fitted on ``E`` (training rows: cross-fitted / leave-self-out
        features) and applied to ``held`` (embeddings of other rows) when given."""
        tr, te = {}, {}
        transform = memory = None
        if "embedding" in need:
            tr["embedding"] = E
            if held is not None:
                te["embedding"] = held
        if "tags" in need:
            if domains is None:
                # at least ~10 prompts a cluster (a classifier over more classes than that
                # would fit noise on small data)
                domains = cluster_domains(E, min(self.config.n_clusters, max(1, len(E) // 10)))
            transform = self._new_transform()
            tr["tags"] = transform.fit_transform(E, domains, quality)
            if held is not None:
                te["tags"] = transform.transform(held)
        if "neighbours" in need:
            memory = OutcomeMemory(self.config.neighbours, self.config.duplicates).fit(
                E, quality, [m.name for m in self.pool])
            tr["neighbours"] = memory.features(E, leave_self_out=True)
            if held is not None:
                te["neighbours"] = memory.features(held)
        return tr, te, transform, memory

    def fit(self, E: np.ndarray, quality: np.ndarray, output_tokens: np.ndarray,
            domains: Sequence[str] | None, *,
            on_step: Callable[[str, int, int], None] | None = None) -> "TextRouter":
        """Fit the feature map and the router on embeddings and per-LLM observations.

        ``quality`` and ``output_tokens`` are (n, K) in :attr:`pool` order (NaN = unseen);
        ``domains`` labels each prompt (``None``: k-means clusters when tags are on). Where
        the configuration leaves a choice (``features="auto"``, ``ridge=None``), it is made
        here by cross-validation on these rows (:func:`mixllm.text.selection.choose`) and
        recorded in :attr:`selection`. ``on_step(what, done, total)``, when given, is called
        after each cross-validation fold (``what="choosing features"``) and after the final fit
        (``what="fitting"``), for progress reporting.
        """
        cfg = self.config
        E = np.asarray(E, dtype=np.float64)
        q = np.asarray(quality, dtype=np.float64)
        tok = np.asarray(output_tokens, dtype=np.float64)
        if E.ndim != 2 or q.shape != (len(E), len(self.pool)) or tok.shape != q.shape:
            raise ValueError(f"E must be (n, d) and quality, output_tokens (n, {len(self.pool)}),"
                             f" got {E.shape}, {q.shape}, {tok.shape}")
        doms = None if domains is None else np.asarray([str(d) for d in domains])
        if doms is not None and doms.shape != (len(E),):
            raise ValueError(f"domains must be a sequence of {len(E)} labels")
        kinds, ridges = cfg.candidates()
        selection = None
        if len(kinds) * len(ridges) > 1:
            # The length target as the core defines it (model.hpp), for the selection's own
            # ridge fits; the router below is given the raw tokens.
            with np.errstate(invalid="ignore", divide="ignore"):
                log_tok = np.log1p(tok)

            def make_blocks(train, held, need):
                tr, te, _, _ = self._blocks(E[train], q[train],
                                            None if doms is None else doms[train], need, E[held])
                return {b: (tr[b], te[b]) for b in need}

            kind, ridge, selection = choose(
                E, q, log_tok, make_blocks, kinds, ridges,
                on_fold=None if on_step is None
                else (lambda done, total: on_step("choosing features", done, total)))
        else:
            kind, ridge = kinds[0], ridges[0]
        tr, _, transform, memory = self._blocks(E, q, doms, blocks_of(kind))
        F = np.hstack([tr[b] for b in blocks_of(kind)])
        router = Router(self.pool, F.shape[1], alpha=cfg.alpha, beta=cfg.beta, tau=cfg.tau,
                        ridge=ridge, lam=cfg.lam, cold_ridge=cfg.cold_ridge)
        router.fit(F, q, tok)
        self.router, self.transform, self.memory = router, transform, memory
        self.feature_map = kind
        self.selection = {"features": kind, "ridge": ridge, **(selection or {})}
        if on_step is not None:
            on_step("fitting", 1, 1)
        return self

    def fit_data(self, data: Any, progress: bool = False) -> "TextRouter":
        """Fit on a :class:`mixllm.data.RoutingData` whose models cover :attr:`pool`.

        ``progress`` shows the encoder's bar over the prompts it embeds (the default encoder
        keeps them in the user's embedding cache) and a bar over the fitting steps: each
        cross-validation fold of the feature and ridge choice, then the final fit."""
        cols = [data.models.index(m.name) for m in self.pool]
        if np.isnan(data.output_tokens).all():
            # costs but no lengths: the lengths that reproduce the costs under the pool's prices
            data = data.select_models([m.name for m in self.pool]).lengths_from_costs(self.pool)
            cols = list(range(len(self.pool)))
        E = self.embed(data.prompts, progress=progress)
        from tqdm import tqdm

        kinds, ridges = self.config.candidates()
        choosing = len(kinds) * len(ridges) > 1
        final = "fitting " + ("tags + router" if self.config.tags else "router")
        with tqdm(total=6 if choosing else 1, disable=not progress, unit="step",
                  desc="choosing features (cross-validation)" if choosing else final) as bar:

            def step(what: str, done: int, total: int) -> None:
                if what == "fitting":
                    bar.set_description(final)
                    bar.update(1)
                    return
                bar.total = total + 1
                bar.update(done - bar.n)
                if done == total:
                    bar.set_description(final)

            self.fit(E, data.quality[:, cols], data.output_tokens[:, cols],
                     domain_labels(data.task, data.tags), on_step=step)
        return self

    def _require(self) -> Router:
        if self.router is None:
            raise ValueError("TextRouter is not fitted")
        return self.router

    def input_tokens(self, prompt: str) -> float:
        """Prompt tokens as mixllm counts them (the encoder's tokenizer, no truncation)."""
        return float(self._encoder().count_tokens([prompt])[0])

    def featurize(self, prompt: str, input_tokens: float | None = None) -> tuple[np.ndarray, float]:
        """The router features ``(d,)`` of one prompt and its input tokens (counted with the
        encoder's tokenizer unless given).

        The prompt is tokenised once: :meth:`~mixllm.text.encoder.Encoder.encode_with_counts`
        embeds and counts the view, and when the view is a part of the prompt the other
        blocks are counted by themselves, which is exact for an encoder with
        ``additive_counts`` (MiniLM's WordPiece). Any other encoder embeds the view and counts
        the whole prompt apart.
        """
        _, x, n_in = self._featurize(prompt, input_tokens)
        return x, n_in

    def _featurize(self, prompt: str, input_tokens: float | None
                   ) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`featurize` with the view's embedding ``(dim,)`` first."""
        enc = self._encoder()
        text, rest = _view_and_rest(prompt, self.config.view)
        if input_tokens is None and (text == prompt
                                     or getattr(enc, "additive_counts", False) is True):
            E, counts = enc.encode_with_counts([text])
            n_in = float(counts[0]) + (float(enc.count_tokens([rest])[0]) if rest else 0.0)
        else:
            E = enc.encode([text])
            n_in = self.input_tokens(prompt) if input_tokens is None else float(input_tokens)
        return E[0], self.features(E)[0], n_in

    def decide(self, prompt: str, lam: float | None = None,
               input_tokens: float | None = None) -> TextDecision:
        """Route one prompt: the decision with the features, token count and embedding it was
        taken on (see :meth:`featurize`); :meth:`learn` takes them back with the outcome."""
        router = self._require()
        e, x, n_in = self._featurize(prompt, input_tokens)
        return TextDecision(router.route(x, n_in, lam=lam), x, n_in, e)

    def route(self, prompt: str, lam: float | None = None,
              input_tokens: float | None = None) -> Decision:
        """Route one prompt: ``decide(...).decision``."""
        return self.decide(prompt, lam, input_tokens).decision

    def learn(self, features: np.ndarray, llm: str, quality: float, output_tokens: float, *,
              embedding: np.ndarray | None = None, weight: float = 1.0) -> "TextRouter":
        """Learn one observed outcome of a decision, on what it was taken on.

        The router learns on ``features`` (:attr:`TextDecision.features`; see
        :meth:`Router.feedback` for ``weight``). With neighbour features the outcome is then
        stored in the outcome memory at ``embedding`` (:attr:`TextDecision.embedding`), after
        the heads learned on the features the prompt had before it (as the training rows,
        which never count themselves). The memory keeps unweighted means, so an outcome of
        ``weight`` other than 1 (a thumb), one without an embedding, and one of an LLM added
        after the fit (no column in the memory) reach the router only.
        """
        self._require().feedback(features, llm, quality, output_tokens, weight=weight)
        if self.memory is not None and embedding is not None and weight == 1.0 \
                and llm in self.memory.llms:
            with self._memory_lock:
                self.memory.observe(embedding, llm, quality)
        return self

    def feedback(self, prompt: str, llm: str, quality: float, output_tokens: float) -> "TextRouter":
        """Learn one observed outcome on a prompt, embedded again (:meth:`learn` on the
        features and embedding of its decision saves that)."""
        self._require()
        e = self._encoder().encode([prompt_view(prompt, self.config.view)])
        return self.learn(self.features(e)[0], llm, quality, output_tokens, embedding=e[0])

    def set_router(self, router: Router) -> Router:
        """Replace the router (a replica adopting the merged state of its peers); returns the
        one replaced. It must take the same features."""
        old = self._require()
        if not isinstance(router, Router):
            raise TypeError(f"router must be a Router, got {type(router).__name__}")
        if router.dim != old.dim:
            raise ValueError(f"the new router takes {router.dim} features, this pipeline "
                             f"makes {old.dim}")
        self.router = router
        return old

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> None:
        """Save to a folder: ``manifest.json`` plus the router, the transform and the outcome
        memory in content-addressed files ``router.<sha>.npz``, ``transform.<sha>.npz`` and
        ``memory.<sha>.npz`` (no pickle).

        The manifest names the files with their sha256 and is replaced last, atomically: it is
        the commit point, so a crash at any moment leaves a folder that loads as the old state
        or the new one. Files no manifest names any more are removed afterwards.
        """
        router = self._require()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".router.{os.getpid()}.{secrets.token_hex(4)}.staging"
        try:
            router.save(staging)
            digest = hashlib.sha256(staging.read_bytes()).hexdigest()
            router_file = f"router.{digest[:16]}.npz"
            os.replace(staging, folder / router_file)
        finally:
            staging.unlink(missing_ok=True)
        files = {router_file: digest}
        raws = {"transform": None if self.transform is None else self.transform.to_bytes()}
        with self._memory_lock:
            raws["memory"] = None if self.memory is None else self.memory.to_bytes()
        named: dict[str, str | None] = {}
        for part, raw in raws.items():
            named[part] = None
            if raw is not None:
                digest = hashlib.sha256(raw).hexdigest()
                named[part] = f"{part}.{digest[:16]}.npz"
                atomic_write(folder / named[part], raw)
                files[named[part]] = digest
        fsync_dir(folder)  # the data files are durable before the manifest names them
        enc = self._encoder()
        manifest = {
            "format": _FORMAT, "version": _VERSION, "config": self.config.to_json(),
            "encoder": {"identity": enc.identity, "max_length": enc.max_length,
                        "default_model": _is_default(enc), **_encoder_kind(enc)},
            "router": router_file, "transform": named["transform"], "memory": named["memory"],
            "feature_map": self.feature_map, "selection": self.selection, "files": files,
        }
        atomic_write(folder / "manifest.json", json.dumps(manifest, indent=2).encode())
        for old in [*folder.glob("router*.npz"), *folder.glob("transform*.npz"),
                    *folder.glob("memory*.npz")]:
            if old.name not in files:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: str | os.PathLike, encoder: Encoder | None = None) -> "TextRouter":
        """Load a folder written by :meth:`save`; the default encoder unless one is given
        (its identity must match the one the router was trained with). A bad folder raises
        ``ValueError`` (:class:`~mixllm.router.StateError` for a bad router file), a missing
        one ``FileNotFoundError``."""
        folder = Path(folder)
        for attempt in range(3):
            manifest = _read_manifest(folder / "manifest.json")
            try:
                raws = {name: (folder / name).read_bytes() for name in manifest["files"]}
                break
            except FileNotFoundError:
                # A concurrent save may have replaced the manifest and removed the files the
                # one read here named: read the new manifest.
                if attempt == 2:
                    raise
        for name, digest in manifest["files"].items():
            if hashlib.sha256(raws[name]).hexdigest() != digest:
                raise ValueError(f"{folder / name}: checksum mismatch (file corrupted)")
        router = Router.load(folder / manifest["router"])
        transform = None
        if manifest["transform"] is not None:
            transform = TagTransform.from_bytes(raws[manifest["transform"]],
                                                str(folder / manifest["transform"]))
        memory = None
        if manifest["memory"] is not None:
            memory = OutcomeMemory.from_bytes(raws[manifest["memory"]],
                                              str(folder / manifest["memory"]))
        kind = manifest["feature_map"]
        want = {"tags": transform is not None, "neighbours": memory is not None}
        if any(want[b] != (b in blocks_of(kind)) for b in want):
            raise ValueError(f"{folder}: feature map {kind!r} does not match the saved files")
        if encoder is None:
            encoder = _rebuild_encoder(manifest["encoder"], folder)
        if encoder.identity != manifest["encoder"]["identity"]:
            raise ValueError(f"{folder}: the router was trained with encoder "
                             f"{manifest['encoder']['identity']}, not {encoder.identity}")
        return cls(router.llms, manifest["config"], encoder, transform, router, memory, kind,
                   manifest.get("selection"))


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def _read_manifest(mpath: Path) -> dict[str, Any]:
    """The folder's manifest, checked (version 1 names fixed files, version 2 its own)."""
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ValueError(f"{mpath}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT \
            or manifest.get("version") not in _READABLE_VERSIONS:
        raise ValueError(f"{mpath}: not a mixllm text router (versions "
                         f"{list(_READABLE_VERSIONS)})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and _SAFE_NAME.fullmatch(k) and isinstance(v, str)
            for k, v in files.items()):
        raise ValueError(f"{mpath}: 'files' must map plain file names to sha256 digests")
    if manifest["version"] == 1:
        manifest["router"] = "router.npz"
        manifest["transform"] = "transform.npz" if "transform.npz" in files else None
    router, transform = manifest.get("router"), manifest.get("transform")
    memory = manifest.setdefault("memory", None)
    if not isinstance(router, str) or router not in files or any(
            f is not None and (not isinstance(f, str) or f not in files)
            for f in (transform, memory)):
        raise ValueError(f"{mpath}: the router, transform or memory file is not in 'files'")
    if "feature_map" not in manifest:  # saved before the feature map was recorded
        manifest["feature_map"] = "tags" if transform is not None else "embedding"
    if manifest["feature_map"] not in FEATURE_MAPS:
        raise ValueError(f"{mpath}: unknown feature map {manifest['feature_map']!r}")
    if manifest.get("selection") is not None and not isinstance(manifest["selection"], dict):
        raise ValueError(f"{mpath}: 'selection' must be an object")
    enc = manifest.get("encoder")
    if not isinstance(enc, dict) or not isinstance(enc.get("identity"), str) \
            or isinstance(enc.get("max_length"), bool) or not isinstance(enc.get("max_length"), int):
        raise ValueError(f"{mpath}: 'encoder' must hold an identity and an integer max_length")
    if not isinstance(manifest.get("config"), dict):
        raise ValueError(f"{mpath}: 'config' must be an object")
    try:
        manifest["config"] = PipelineConfig.from_json(manifest["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: bad pipeline settings ({exc})") from exc
    return manifest


def _encoder_kind(enc: Encoder) -> dict[str, Any]:
    """What :meth:`TextRouter.load` needs to rebuild the encoder: its kind, and for the static
    one the table (``None``: the default table of ``dim`` components, rebuilt if missing)."""
    from .static import StaticEncoder, default_table_path

    if not isinstance(enc, StaticEncoder):
        return {"kind": "transformer"}

    path = enc.table_path
    default = path is not None and path.name == default_table_path(enc.dim).name
    return {"kind": "static", "dim": enc.dim,
            "table": None if default or path is None else str(path)}


def _rebuild_encoder(entry: dict[str, Any], folder: Path) -> Encoder:
    kind = entry.get("kind", "transformer")  # version-1 folders and older saves: MiniLM
    max_length = int(entry["max_length"])
    if kind == "transformer":
        from .onnx import OnnxEncoder

        return OnnxEncoder(max_length=max_length)
    if kind == "static":
        from .static import DEFAULT_DIM, StaticEncoder

        dim, table = entry.get("dim", DEFAULT_DIM), entry.get("table")
        if isinstance(dim, bool) or not isinstance(dim, int) or not (
                table is None or isinstance(table, str)):
            raise ValueError(f"{folder}: bad static encoder entry in the manifest")
        return StaticEncoder(table, dim=dim, max_length=max_length)
    raise ValueError(f"{folder}: unknown encoder kind {kind!r} in the manifest")


def _is_default(enc: Encoder) -> bool:
    from .onnx import DEFAULT_MODEL_SHA256

    return enc.model_sha256 == DEFAULT_MODEL_SHA256
