"""Hold a spend target online by adapting the willingness to pay ``lam``.

A service rarely knows the ``lam`` that gives the spend it can afford: it knows the budget
("about $0.002 a query on average"). :class:`SpendController` turns the budget into ``lam``
and corrects it as real costs come in, by a multiplicative step on the log of ``lam``::

    log lam <- log lam + eta * (target - cost_avg) / target

where ``cost_avg`` is an exponential moving average of the observed cost per query. Spending
more than the target lowers ``lam`` (cheaper routes), spending less raises it; ``lam`` stays in
``[lam_min, lam_max]``.
"""

from __future__ import annotations

import math

__all__ = ["SpendController"]


def _positive(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


class SpendController:
    """Adapt ``lam`` so that the average cost per query tracks ``target_usd``.

    Parameters
    ----------
    target_usd : float
        Target average cost per query, USD (> 0).
    lam : float
        Starting willingness to pay, USD per unit of quality (> 0).
    eta : float
        Step size on ``log lam`` per query (> 0).
    smoothing : float
        Weight of the newest cost in the moving average, in (0, 1].
    lam_min, lam_max : float
        Bounds of ``lam``.
    """

    def __init__(self, target_usd: float, lam: float = 0.01, eta: float = 0.05,
                 smoothing: float = 0.05, lam_min: float = 1e-7, lam_max: float = 1e3) -> None:
        self.target_usd = _positive("target_usd", target_usd)
        self.eta = _positive("eta", eta)
        self.smoothing = _positive("smoothing", smoothing)
        if self.smoothing > 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        self.lam_min = _positive("lam_min", lam_min)
        self.lam_max = _positive("lam_max", lam_max)
        if self.lam_min >= self.lam_max:
            raise ValueError("lam_min must be < lam_max")
        self.lam = min(max(_positive("lam", lam), self.lam_min), self.lam_max)
        self.cost_avg = self.target_usd
        self.n = 0
        self.spent_usd = 0.0

    def observe(self, cost_usd: float) -> float:
        """Record one query's real cost; returns the ``lam`` to use for the next query."""
        if isinstance(cost_usd, bool) or not isinstance(cost_usd, (int, float)) \
                or not math.isfinite(cost_usd) or cost_usd < 0:
            raise ValueError(f"cost_usd must be a finite number >= 0, got {cost_usd!r}")
        self.n += 1
        self.spent_usd += float(cost_usd)
        self.cost_avg += self.smoothing * (float(cost_usd) - self.cost_avg)
        step = self.eta * (self.target_usd - self.cost_avg) / self.target_usd
        self.lam = min(max(self.lam * math.exp(step), self.lam_min), self.lam_max)
        return self.lam

    @property
    def mean_cost_usd(self) -> float:
        """Average cost per observed query so far (0 before the first)."""
        return self.spent_usd / self.n if self.n else 0.0
