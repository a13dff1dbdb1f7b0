"""What every figure of the project carries: a title naming the model version and the run, labelled
axes, and the values written on the bars or points (a reader should not need the JSON beside it)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path


def new_run_id(now: datetime | None = None) -> str:
    """A run id: the UTC start time to the second (``20260301T120000Z``), sortable and unique per run."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display needed), imported when first plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stamp(fig, title: str, model_version: str, run_id: str) -> None:
    """The figure's title: what it shows, then the model version and the run id."""
    fig.suptitle(f"{title}\nmodel {model_version} · run {run_id}", fontsize=10)


def label_bars(ax, bars, fmt: str = "{:.3f}", intervals=None) -> None:
    """Each bar's value written above it (below it for a negative bar), clear of its error bar when
    ``intervals`` gives each bar's (low, high)."""
    for i, b in enumerate(bars):
        v = b.get_height()
        at = v if intervals is None else (intervals[i][1] if v >= 0 else intervals[i][0])
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, at), xytext=(0, 3 if v >= 0 else -3),
                    textcoords="offset points", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.margins(y=0.12)  # room for the labels


def save(fig, path: str | Path) -> Path:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
