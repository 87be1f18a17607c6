"""Cost–quality plot of an evaluation report (matplotlib, no display needed)."""

from __future__ import annotations

import os
from typing import Any

from .evaluate import hull


def plot_report(report: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Write a PNG of every router's hull (curves) and of single points (single LLMs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    routers = report["routers"]
    for name, r in routers.items():
        pts = [(p["cost_pct"], p["quality_pct"]) for p in r["curve"]]
        if len(pts) == 1:
            ax.scatter(*pts[0], s=22, color="grey", zorder=3)
            ax.annotate(name.split("/")[-1], pts[0], fontsize=6, color="grey",
                        xytext=(3, 2), textcoords="offset points")
            continue
        h = hull(pts)
        style = {"linewidth": 2.6, "color": "crimson", "zorder": 5} if name == "mixllm" \
            else {"linewidth": 1.2, "alpha": 0.85}
        if name == "oracle":
            style = {"linewidth": 1.0, "color": "black", "linestyle": ":"}
        ax.plot([c for c, _ in h], [q for _, q in h], label=name, **style)
    ax.axhline(100.0, color="grey", linewidth=0.6, linestyle="--")
    ax.axhline(97.25, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel(f"cost, % of always using {report['reference']} (log scale)")
    ax.set_ylabel(f"quality, % of {report['reference']}")
    ax.set_title(title or f"mixllm vs baselines (test n={report.get('n_test', '?')})")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
