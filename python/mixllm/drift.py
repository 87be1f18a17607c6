"""Change detection per LLM: is its recent prediction error unlike its history?

Every feedback on LLM ``k`` gives a residual ``e = observed quality - predicted quality``, the
prediction taken *before* the feedback is learned (a prequential error, Dawid 1984). While the
world is stationary the residuals of a well-specified online regression have mean ~0; when the
provider changes the model behind a name, the LLM's residuals shift (negative: it got worse,
positive: better) until the router has relearned it. The monitor compares the last ``window``
residuals with all the LLM's earlier ones (Welch's two-sample statistic)::

    z = (mean_recent - mean_history) / sqrt(var_recent / n_recent + var_history / n_history)

and flags the LLM when ``|z| > threshold`` with at least ``min_history`` earlier residuals. The
threshold is high (4 by default) because the statistic is looked at after every feedback: a
stationary LLM's |z| crosses 4 rarely, a quality drop of 0.2 on 0/1 outcomes (sd ~0.5) is
flagged within a window of ~200 of its feedback. The history is kept as running sums (O(1)
memory per LLM beyond the window); :meth:`DriftMonitor.reset` acknowledges a change and starts
a new history.

The statistics are runtime state: they are not saved with the router.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

__all__ = ["DriftMonitor", "DriftStat", "DriftCollector"]


@dataclass(frozen=True)
class DriftStat:
    """One LLM's change statistics.

    Attributes
    ----------
    n : int
        Residuals seen since the last reset.
    recent_mean, history_mean : float
        Mean residual (observed - predicted quality) of the recent window and of the earlier
        residuals (NaN when there are none).
    recent_rmse, history_rmse : float
        Root mean squared residual of each.
    z : float
        The two-sample statistic (0 until ``min_history`` earlier residuals exist).
    drifted : bool
        ``|z| > threshold``.
    direction : str
        ``"worse"`` (observed below predictions), ``"better"`` or ``""``.
    """

    n: int
    recent_mean: float
    history_mean: float
    recent_rmse: float
    history_rmse: float
    z: float
    drifted: bool
    direction: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Track:
    __slots__ = ("recent", "n_h", "mean_h", "m2_h", "sq_h")

    def __init__(self, window: int) -> None:
        self.recent: collections.deque[float] = collections.deque(maxlen=window)
        self.n_h = 0
        self.mean_h = 0.0
        self.m2_h = 0.0
        self.sq_h = 0.0

    def push(self, e: float) -> None:
        if len(self.recent) == self.recent.maxlen:
            old = self.recent[0]
            self.n_h += 1  # Welford's running mean and sum of squares
            delta = old - self.mean_h
            self.mean_h += delta / self.n_h
            self.m2_h += delta * (old - self.mean_h)
            self.sq_h += old * old
        self.recent.append(e)


class DriftMonitor:
    """Per-LLM change detection on prediction residuals (see the module docstring).

    Parameters
    ----------
    window : int
        Residuals in the recent window (>= 10).
    threshold : float
        ``|z|`` above which an LLM is flagged (> 0).
    min_history : int, optional
        Earlier residuals needed before any flag (default: ``window``).
    """

    def __init__(self, window: int = 200, threshold: float = 4.0,
                 min_history: int | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 10:
            raise ValueError(f"window must be an integer >= 10, got {window!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        min_history = window if min_history is None else min_history
        if isinstance(min_history, bool) or not isinstance(min_history, int) or min_history < 2:
            raise ValueError(f"min_history must be an integer >= 2, got {min_history!r}")
        self.window = window
        self.threshold = float(threshold)
        self.min_history = min_history
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {"window": self.window, "threshold": self.threshold,
                "min_history": self.min_history}

    def observe(self, llm: str, residual: float) -> None:
        """Add one residual (observed - predicted quality) of ``llm``."""
        if not isinstance(llm, str):
            raise ValueError(f"llm must be a str, got {type(llm).__name__}")
        if isinstance(residual, bool) or not isinstance(residual, (int, float)) \
                or not math.isfinite(residual):
            raise ValueError(f"residual must be a finite number, got {residual!r}")
        with self._lock:
            t = self._tracks.get(llm)
            if t is None:
                t = self._tracks[llm] = _Track(self.window)
            t.push(float(residual))

    def reset(self, llm: str | None = None) -> None:
        """Start a new history for ``llm`` (every LLM when ``None``), e.g. once a change is
        acknowledged."""
        with self._lock:
            if llm is None:
                self._tracks.clear()
            else:
                self._tracks.pop(llm, None)

    forget = reset  # an LLM removed from the pool

    def copy(self) -> "DriftMonitor":
        other = DriftMonitor(self.window, self.threshold, self.min_history)
        with self._lock:
            for name, t in self._tracks.items():
                c = _Track(self.window)
                c.recent.extend(t.recent)
                c.n_h, c.mean_h, c.m2_h, c.sq_h = t.n_h, t.mean_h, t.m2_h, t.sq_h
                other._tracks[name] = c
        return other

    def _stat(self, t: _Track) -> DriftStat:
        r = list(t.recent)
        n_r = len(r)
        mean_r = sum(r) / n_r if n_r else math.nan
        var_r = sum((v - mean_r) ** 2 for v in r) / (n_r - 1) if n_r > 1 else 0.0
        rmse_r = math.sqrt(sum(v * v for v in r) / n_r) if n_r else math.nan
        mean_h = t.mean_h if t.n_h else math.nan
        var_h = t.m2_h / (t.n_h - 1) if t.n_h > 1 else 0.0
        rmse_h = math.sqrt(t.sq_h / t.n_h) if t.n_h else math.nan
        z = 0.0
        if t.n_h >= self.min_history and n_r >= 2:
            se = math.sqrt(var_r / n_r + var_h / t.n_h)
            diff = mean_r - mean_h
            z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        drifted = abs(z) > self.threshold
        direction = ("worse" if z < 0 else "better") if drifted else ""
        return DriftStat(n_r + t.n_h, mean_r, mean_h, rmse_r, rmse_h, z, drifted, direction)

    def stats(self) -> dict[str, DriftStat]:
        """Every tracked LLM's statistics."""
        with self._lock:
            return {name: self._stat(t) for name, t in self._tracks.items()}


class DriftCollector:
    """A Prometheus collector of a router's drift statistics, read at scrape time:
    ``mixllm_drift_z``, ``mixllm_drift_alarm`` (0/1) and ``mixllm_drift_recent_error`` (mean
    residual of the window), one gauge per LLM. ``get_router`` returns the current router
    (replicas may replace it); a router without monitoring yields no samples."""

    def __init__(self, get_router: Callable[[], Any]) -> None:
        self._get = get_router

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        z = GaugeMetricFamily("mixllm_drift_z", "Change statistic of each LLM's prediction "
                              "residuals, recent window vs history", labels=["llm"])
        alarm = GaugeMetricFamily("mixllm_drift_alarm", "1 when |mixllm_drift_z| is over the "
                                  "threshold", labels=["llm"])
        err = GaugeMetricFamily("mixllm_drift_recent_error", "Mean observed - predicted "
                                "quality over the recent window", labels=["llm"])
        router = self._get()
        stats = router.drift() if router is not None and router.drift_monitor is not None \
            else {}
        for name, s in stats.items():
            z.add_metric([name], s.z if math.isfinite(s.z) else math.copysign(1e308, s.z))
            alarm.add_metric([name], 1.0 if s.drifted else 0.0)
            err.add_metric([name], s.recent_mean)
        yield z
        yield alarm
        yield err
