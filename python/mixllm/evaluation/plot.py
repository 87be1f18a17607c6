"""Cost–quality plot of an evaluation report (matplotlib, no display needed)."""

from __future__ import annotations

import os
from typing import Any

from .evaluate import hull

# Label positions tried around a single LLM's point, in points (first free one wins).
_OFFSETS = ((4, 3), (4, -9), (-4, 3), (-4, -9), (4, 10), (-4, 10), (4, -16), (-4, -16),
            (10, -3), (-10, -3))


def plot_report(report: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Write a PNG of every router's hull (curves) and of single points (single LLMs).

    The legend sits outside the axes (it covers nothing), each single LLM's label takes the
    first place around its point that overlaps no other label and stays inside the axes, the
    log cost axis is ticked at 1-2-5 steps, the 100% and 97.25% quality lines are labelled,
    and task-best is dashed on top of the other curves so that it shows where they coincide.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(9.5, 5.8), dpi=120)
    routers = report["routers"]
    singles = []
    # Baseline colours: none close to mixllm's crimson.
    palette = iter(["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
                    "tab:olive", "tab:cyan", "tab:pink", "tab:gray"] * 4)
    for name, r in routers.items():
        pts = [(p["cost_pct"], p["quality_pct"]) for p in r["curve"]]
        if len(pts) == 1:
            singles.append((name, pts[0]))
            continue
        h = hull(pts)
        style: dict[str, Any] = {"linewidth": 1.2, "alpha": 0.85, "zorder": 3}
        if name not in ("mixllm", "task-best", "oracle"):
            style["color"] = next(palette)
        if name == "mixllm":
            style = {"linewidth": 2.6, "color": "crimson", "zorder": 5}
        elif name == "task-best":
            style = {"linewidth": 1.6, "color": "black", "linestyle": (0, (4, 2)), "zorder": 6}
        elif name == "oracle":
            style = {"linewidth": 1.0, "color": "black", "linestyle": ":", "zorder": 3}
        ax.plot([c for c, _ in h], [q for _, q in h], label=name, **style)
    for _, (c, q) in singles:
        ax.scatter(c, q, s=22, color="grey", zorder=7)
    ax.axhline(100.0, color="grey", linewidth=0.6, linestyle="--", zorder=1)
    ax.axhline(97.25, color="grey", linewidth=0.6, linestyle=":", zorder=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.margins(x=0.06, y=0.06)
    ax.set_xlabel(f"cost, % of always using {report['reference']} (log scale)")
    ax.set_ylabel(f"quality, % of {report['reference']}")
    ax.set_title(title or f"mixllm vs baselines (test n={report.get('n_test', '?')})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(True, which="major", linewidth=0.4)
    ax.grid(True, which="minor", linewidth=0.15)
    # The reference lines' labels, at the left edge just above each line.
    tr = ax.get_yaxis_transform()
    for y, text in ((100.0, "100% of the reference"), (97.25, "97.25%")):
        ax.text(0.005, y, text, transform=tr, fontsize=7, color="dimgrey", va="bottom",
                ha="left", zorder=2)
    fig.tight_layout()
    _place_labels(fig, ax, singles)
    fig.savefig(path)
    plt.close(fig)


def _place_labels(fig: Any, ax: Any, singles: list[tuple[str, tuple[float, float]]]) -> None:
    """Label each single LLM at the first offset that overlaps no placed label and stays
    inside the axes (the last candidate otherwise); labels get a light box so that a curve
    under one does not hide it."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    # Higher points first: they are the ones the curves run near.
    for name, (c, q) in sorted(singles, key=lambda s: (-s[1][1], s[1][0])):
        label = name.split("/")[-1]
        for dx, dy in _OFFSETS:
            t = ax.annotate(label, (c, q), fontsize=6.5, color="dimgrey",
                            xytext=(dx, dy), textcoords="offset points",
                            ha="left" if dx >= 0 else "right", zorder=8,
                            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                  "edgecolor": "none", "alpha": 0.75})
            box = t.get_window_extent(renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(b) for b in placed):
                break
            if (dx, dy) != _OFFSETS[-1]:
                t.remove()
        placed.append(box)
