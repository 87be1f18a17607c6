"""A JSONL log of routing decisions and of what was later observed about them.

One JSON object per line, of two kinds, joined by ``id``:

``{"kind": "decision", ...}`` written when a query is routed::

    id            str      the response id (unique in the log)
    time          float    Unix seconds
    llms          [str]    the pool when the decision was taken (the order of every list)
    chosen        str      the LLM the query was sent to
    propensity    float    its probability under the logging policy, in (0, 1]
    probabilities [float]  the whole distribution (optional)
    terms         {term: [float]}   the router's quality, output_tokens, cost, bonus,
                           penalty and score per LLM (the direct model of doubly robust OPE)
    lam, alpha, beta  float|"inf"   the score's settings for this decision
    input_tokens  float
    x             [float]  the router's features of the query (optional: needed only to
                           judge another fitted router)
    policy        {...}    the explorer's settings (temperature, epsilon, seed)

``{"kind": "feedback", "id": ..., "llm": name, "quality": q, "cost": c, "output_tokens": n}``
written when something about the response is observed (the proxy: cost and tokens when the
response ends, quality when ``/v1/feedback`` arrives). Any field may be missing; for a field
given several times the last value counts. ``llm`` names the LLM that answered: when it is not
the chosen one (the proxy fell back to another after a failure) the row's outcomes are not the
chosen LLM's, so :func:`read_log` leaves them out and counts the row.

:func:`read_log` checks every line and returns the joined rows as arrays; a malformed line is a
:class:`LogError` naming the line, never skipped silently. Feedback whose decision is not in the
file (a rotated log) is counted, not an error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .types import Decision

__all__ = ["DecisionLogger", "DecisionLog", "DecisionRecorder", "LogError", "read_log", "TERMS"]

log = logging.getLogger("mixllm.decision_log")

TERMS = ("quality", "output_tokens", "cost", "bonus", "penalty", "score")
_OUTCOMES = ("quality", "cost", "output_tokens")


class LogError(ValueError):
    """A decision log is unreadable or inconsistent (the message names the line)."""


def _num(v: float) -> float | str:
    return "inf" if v == math.inf else float(v)


class DecisionLogger:
    """Appends decision and feedback records to a JSONL file: thread-safe, each line one
    ``write`` to a file opened for appending (``O_APPEND``), unbuffered, so a crash loses at
    most the line being written and several processes (replicas) may share one file without
    interleaving their lines.

    Parameters
    ----------
    path : path
        The log file (appended to; created with its folder if missing).
    log_features : bool
        Also record the router's features ``x`` of each query (needed to evaluate another
        fitted router; a few kB a line at 384 dimensions).
    """

    def __init__(self, path: str | os.PathLike, log_features: bool = True) -> None:
        self.path = Path(path)
        self.log_features = bool(log_features)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "DecisionLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"the decision log {self.path} is closed")
            data = (line + "\n").encode()
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (a signal, a full disk) goes on
                written += os.write(self._fd, data[written:])

    def log_decision(self, rid: str, decision: Decision, *, chosen: str | None = None,
                     propensity: float = 1.0, probabilities: Sequence[float] | None = None,
                     lam: float, alpha: float, beta: float, input_tokens: float,
                     x: Any = None, policy: dict[str, Any] | None = None) -> None:
        """Record one routing decision (``chosen`` defaults to the router's own choice)."""
        if not isinstance(rid, str) or not rid:
            raise ValueError("rid must be a non-empty string")
        if not isinstance(decision, Decision):
            raise ValueError(f"decision must be a Decision, got {type(decision).__name__}")
        chosen = decision.llm if chosen is None else chosen
        if chosen not in decision.names:
            raise ValueError(f"chosen {chosen!r} is not in the decision's pool")
        if not (isinstance(propensity, (int, float)) and 0.0 < propensity <= 1.0):
            raise ValueError(f"propensity must be in (0, 1], got {propensity!r}")
        terms = decision.terms
        if not np.isfinite(terms[[0, 1, 3, 4, 5]]).all():
            raise ValueError("the decision's terms are not finite")
        rec: dict[str, Any] = {
            "kind": "decision", "id": rid, "time": time.time(), "llms": list(decision.names),
            "chosen": chosen, "propensity": float(propensity),
            "terms": {t: [_num(v) for v in terms[j]] for j, t in enumerate(TERMS)},
            "lam": _num(lam), "alpha": float(alpha), "beta": float(beta),
            "input_tokens": float(input_tokens),
        }
        if probabilities is not None:
            rec["probabilities"] = [float(v) for v in probabilities]
        if self.log_features and x is not None:
            rec["x"] = [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]
        if policy is not None:
            rec["policy"] = dict(policy)
        self._write(rec)

    def log_feedback(self, rid: str, *, quality: float | None = None, cost: float | None = None,
                     output_tokens: float | None = None, llm: str | None = None) -> None:
        """Record what was observed about response ``rid`` (any of the three), and which LLM
        answered it (``llm``, optional)."""
        if not isinstance(rid, str) or not rid:
            raise ValueError("rid must be a non-empty string")
        if llm is not None and (not isinstance(llm, str) or not llm):
            raise ValueError("llm must be a non-empty string")
        rec: dict[str, Any] = {"kind": "feedback", "id": rid, "time": time.time()}
        if llm is not None:
            rec["llm"] = llm
        for name, v in (("quality", quality), ("cost", cost), ("output_tokens", output_tokens)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            rec[name] = float(v)
        if len(rec) == 3 + (llm is not None):
            raise ValueError("feedback needs at least one of quality, cost, output_tokens")
        self._write(rec)


@dataclass
class DecisionLog:
    """The joined rows of a decision log, in file order (``n`` decisions, ``K`` LLMs).

    ``terms`` is (n, 6, K) in :data:`TERMS` order; ``quality``, ``cost`` and
    ``output_tokens`` are (n,), NaN where never observed; ``x`` is (n, d) or ``None`` when any
    decision lacks features; ``probabilities`` (n, K) likewise; ``lam`` may hold ``inf``.
    """

    ids: list[str]
    llms: list[str]
    chosen: np.ndarray
    propensity: np.ndarray
    terms: np.ndarray
    lam: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    input_tokens: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    output_tokens: np.ndarray
    x: np.ndarray | None
    probabilities: np.ndarray | None = None
    orphan_feedback: int = 0
    fallback_rows: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def _field(rec: dict, key: str, where: str) -> Any:
    if key not in rec:
        raise LogError(f"{where}: missing field {key!r}")
    return rec[key]


def _float(v: Any, what: str, where: str, *, allow_inf: bool = False) -> float:
    if v == "inf" and allow_inf:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LogError(f"{where}: {what} must be a number, got {v!r}")
    v = float(v)
    if not (math.isfinite(v) or (allow_inf and v == math.inf)):
        raise LogError(f"{where}: {what} must be finite, got {v!r}")
    return v


def read_log(path: str | os.PathLike) -> DecisionLog:
    """Read and join a decision log (see the module docstring); raises :class:`LogError`."""
    path = Path(path)
    decisions: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    outcomes: list[dict[str, float]] = []
    orphans = 0
    llms: list[str] | None = None
    with open(path, encoding="utf-8") as f:  # FileNotFoundError passes through as it is
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise LogError(f"{where}: not JSON ({exc})") from None
            if not isinstance(rec, dict):
                raise LogError(f"{where}: a record must be a JSON object")
            kind = _field(rec, "kind", where)
            rid = _field(rec, "id", where)
            if not isinstance(rid, str) or not rid:
                raise LogError(f"{where}: id must be a non-empty string")
            if kind == "decision":
                if rid in index:
                    raise LogError(f"{where}: decision id {rid!r} appears twice")
                names = _field(rec, "llms", where)
                if not isinstance(names, list) or not names or \
                        not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                    raise LogError(f"{where}: llms must be a list of distinct names")
                if llms is None:
                    llms = names
                elif sorted(names) != sorted(llms):
                    raise LogError(f"{where}: the pool changed ({sorted(names)} after "
                                   f"{sorted(llms)}); evaluate each pool's part of the log apart")
                perm = [names.index(n) for n in llms]  # this record's columns in log order
                chosen = _field(rec, "chosen", where)
                if chosen not in names:
                    raise LogError(f"{where}: chosen {chosen!r} is not in llms")
                prop = _float(_field(rec, "propensity", where), "propensity", where)
                if not 0.0 < prop <= 1.0:
                    raise LogError(f"{where}: propensity must be in (0, 1], got {prop}")
                terms_rec = _field(rec, "terms", where)
                if not isinstance(terms_rec, dict):
                    raise LogError(f"{where}: terms must be an object")
                terms = np.empty((len(TERMS), len(names)))
                for j, t in enumerate(TERMS):
                    row = _field(terms_rec, t, where)
                    if not isinstance(row, list) or len(row) != len(names):
                        raise LogError(f"{where}: terms.{t} must list one number per LLM")
                    terms[j] = [_float(v, f"terms.{t}", where, allow_inf=(t == "cost"))
                                for v in row]
                x = rec.get("x")
                if x is not None:
                    if not isinstance(x, list) or not x:
                        raise LogError(f"{where}: x must be a non-empty list of numbers")
                    x = np.array([_float(v, "x", where) for v in x])
                probs = rec.get("probabilities")
                if probs is not None:
                    if not isinstance(probs, list) or len(probs) != len(names):
                        raise LogError(f"{where}: probabilities must list one number per LLM")
                    probs = np.array([_float(v, "probabilities", where) for v in probs])
                    if (probs < 0).any() or abs(probs.sum() - 1.0) > 1e-6:
                        raise LogError(f"{where}: probabilities must be >= 0 and sum to 1")
                    if abs(probs[names.index(chosen)] - prop) > 1e-9:
                        raise LogError(f"{where}: propensity {prop} is not the chosen LLM's "
                                       f"probability {probs[names.index(chosen)]}")
                    probs = probs[perm]
                d = {"id": rid, "chosen": llms.index(chosen), "propensity": prop,
                     "probabilities": probs,
                     "terms": terms[:, perm],
                     "lam": _float(_field(rec, "lam", where), "lam", where, allow_inf=True),
                     "alpha": _float(rec.get("alpha", 0.0), "alpha", where),
                     "beta": _float(rec.get("beta", 0.0), "beta", where),
                     "input_tokens": _float(rec.get("input_tokens", 0.0), "input_tokens", where),
                     "x": x}
                if not d["lam"] > 0:
                    raise LogError(f"{where}: lam must be > 0")
                index[rid] = len(decisions)
                decisions.append(d)
                outcomes.append({})
            elif kind == "feedback":
                vals: dict[str, Any] = {k: _float(rec[k], k, where) for k in _OUTCOMES
                                        if k in rec}
                if "llm" in rec:
                    if not isinstance(rec["llm"], str):
                        raise LogError(f"{where}: llm must be a string")
                    vals["llm"] = rec["llm"]
                if rid in index:
                    outcomes[index[rid]].update(vals)
                else:
                    orphans += 1
            else:
                raise LogError(f"{where}: unknown record kind {kind!r}")
    if not decisions:
        raise LogError(f"{path}: no decision records")
    xs = [d["x"] for d in decisions]
    X = None
    if all(x is not None for x in xs):
        dims = {len(x) for x in xs}
        if len(dims) != 1:
            raise LogError(f"{path}: the features x change dimension within the log ({dims})")
        X = np.stack(xs)
    ps = [d["probabilities"] for d in decisions]
    P = np.stack(ps) if all(p is not None for p in ps) else None

    # Outcomes of another LLM than the chosen one (a fallback) are not the chosen action's.
    fell_back = [("llm" in o and o["llm"] != llms[d["chosen"]]) for o, d in
                 zip(outcomes, decisions)]

    def col(key: str) -> np.ndarray:
        return np.array([math.nan if fb else o.get(key, math.nan)
                         for o, fb in zip(outcomes, fell_back)])

    return DecisionLog(
        ids=[d["id"] for d in decisions], llms=list(llms),
        chosen=np.array([d["chosen"] for d in decisions], dtype=np.int64),
        propensity=np.array([d["propensity"] for d in decisions]),
        terms=np.stack([d["terms"] for d in decisions]),
        lam=np.array([d["lam"] for d in decisions]),
        alpha=np.array([d["alpha"] for d in decisions]),
        beta=np.array([d["beta"] for d in decisions]),
        input_tokens=np.array([d["input_tokens"] for d in decisions]),
        quality=col("quality"), cost=col("cost"), output_tokens=col("output_tokens"),
        x=X, probabilities=P, orphan_feedback=orphans, fallback_rows=int(sum(fell_back)))


class DecisionRecorder:
    """What a serving loop does with exploration and a decision log, in three calls:
    :meth:`choose` (sample the LLM, log the decision), :meth:`outcome` (cost and tokens once
    the response is complete) and :meth:`feedback` (quality when it arrives).

    A failure to write the log (disk full, closed file) is logged and counted in
    :attr:`errors`; it never fails the request being served.
    """

    def __init__(self, logger: DecisionLogger | None = None, explorer: Any = None) -> None:
        from .exploration import Explorer

        if logger is not None and not isinstance(logger, DecisionLogger):
            raise ValueError(f"logger must be a DecisionLogger, got {type(logger).__name__}")
        if explorer is not None and not isinstance(explorer, Explorer):
            raise ValueError(f"explorer must be an Explorer, got {type(explorer).__name__}")
        self.logger = logger
        self.explorer = explorer
        self.errors = 0

    def _guard(self, fn: Any, *args: Any, **kw: Any) -> None:
        if self.logger is None:
            return
        try:
            fn(*args, **kw)
        except (OSError, ValueError):
            self.errors += 1
            log.exception("writing the decision log %s failed", self.logger.path)

    def choose(self, rid: str, decision: Decision, *, lam: float, alpha: float, beta: float,
               input_tokens: float, x: Any = None) -> str:
        """The LLM to send the query to (the explorer's sample, else the router's choice),
        with the decision logged."""
        if self.explorer is not None:
            c = self.explorer.choose(decision)
            chosen, prop, probs = c.llm, c.propensity, c.probabilities
            policy = self.explorer.settings()
        else:
            chosen, prop, probs, policy = decision.llm, 1.0, None, None
        self._guard(self.logger.log_decision if self.logger else None, rid, decision,
                    chosen=chosen, propensity=prop, probabilities=probs, lam=lam, alpha=alpha,
                    beta=beta, input_tokens=input_tokens, x=x, policy=policy)
        return chosen

    def outcome(self, rid: str, llm: str, cost: float, output_tokens: float) -> None:
        self._guard(self.logger.log_feedback if self.logger else None, rid, cost=cost,
                    output_tokens=output_tokens, llm=llm)

    def feedback(self, rid: str, llm: str, quality: float) -> None:
        self._guard(self.logger.log_feedback if self.logger else None, rid, quality=quality,
                    llm=llm)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
