"""The run report's charts, drawn with matplotlib's Agg canvas into PNG bytes.

Figures are built as ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``,
never through ``pyplot``: that selects the Agg backend for these figures only,
inside the call, without touching the process-wide backend (a notebook or a
Databricks driver keeps its own) and without pyplot's global figure registry,
which leaks figures in long-lived drivers. matplotlib is imported only here,
when a chart is drawn (it is the ``report`` extra).

Every PNG has a fixed pixel size so reports compare across runs and the HTML
can state it: ``CHART_SIZE`` (800x600) for the bar charts and histograms;
``confusion_size(n)`` for the confusion matrix: 900x800 up to 8 labels, then
75 px more in each direction per extra label, so cell text stays legible.
They are never saved with ``bbox_inches="tight"``, which would change the size.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np

from skol_spark.errors import DependencyError

DPI = 100
CHART_SIZE = (800, 600)
CONFUSION_SIZE = (900, 800)
CONFUSION_STEP = 75
METRIC_COLOURS = {"precision": "#4C72B0", "recall": "#DD8452", "f1": "#55A868"}
MAX_TICK_CHARS = 22


def _figure(size: tuple[int, int]) -> Any:
    """A Figure of exactly ``size`` pixels on its own Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise DependencyError("the run report needs matplotlib: pip install 'skol_spark[report]' "
                              "(or pip install matplotlib>=3.7)") from e
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def confusion_size(n_labels: int) -> tuple[int, int]:
    """Pixel size of the confusion matrix PNG for ``n_labels`` labels."""
    extra = CONFUSION_STEP * max(0, n_labels - 8)
    return CONFUSION_SIZE[0] + extra, CONFUSION_SIZE[1] + extra


def _thousands(ax: Any, axis: str) -> None:
    from matplotlib.ticker import StrMethodFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _legend_under_title(ax: Any, handles: list[Any], columns: int) -> None:
    """One legend row between the title and the plot, where it can never cover a bar."""
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=columns, fontsize=9,
              frameon=False)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _short(name: str) -> str:
    """A tick label that cannot push the plot area off the canvas."""
    name = str(name)
    return name if len(name) <= MAX_TICK_CHARS else name[:MAX_TICK_CHARS - 1] + "…"


def class_colours(n: int) -> list[Any]:
    """One distinct colour per label (tab10, tab20 beyond ten labels), shared by all charts."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Heat map of ``matrix`` (rows true, columns predicted): each cell shows its count and its
    share of the true class; the colour is that share, so small classes are as visible as big ones."""
    counts = np.asarray(matrix, dtype=np.int64)
    support = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    n = len(labels)
    fig = _figure(confusion_size(n))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="share of the true class (row)", shrink=0.8)
    size = 12.0 if n <= 4 else 10.0 if n <= 8 else 8.5
    for i in range(n):
        for j in range(n):
            text = f"{counts[i, j]:,}\n{rates[i, j]:.1%}" if support[i, 0] else "0\n–"
            ax.text(j, i, text, ha="center", va="center", fontsize=size,
                    color="white" if rates[i, j] > 0.55 else "#1a1a1a")
    ticks = [_short(name) for name in labels]
    ax.set_xticks(range(n), ticks, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), [f"{t}\n(n={s:,})" for t, s in zip(ticks, support[:, 0])])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion matrix ({int(counts.sum()):,} labelled lines)")
    return _png(fig)


def class_metrics_png(metrics: dict[str, Any]) -> bytes:
    """Grouped bars of precision, recall and F1 per label, valued when there are few labels."""
    labels = metrics["labels"]
    fig = _figure(CHART_SIZE)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    width = 0.27
    for k, key in enumerate(("precision", "recall", "f1")):
        values = [metrics["per_class"][name][key] for name in labels]
        bars = ax.bar(x + (k - 1) * width, values, width, label=key if key != "f1" else "F1",
                      color=METRIC_COLOURS[key])
        if len(labels) <= 8:
            ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xticks(x, [_short(n) for n in labels], rotation=30 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center")
    for i, name in enumerate(labels):  # a class with nothing to draw would look like a missing bar
        if not any(metrics["per_class"][name][k] for k in ("precision", "recall", "f1")):
            ax.text(i, 0.02, "all 0", ha="center", va="bottom", fontsize=8, color="#c62828")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_xlabel("true label")
    ax.axhline(metrics["macro"]["f1"], color="#55A868", linestyle="--", linewidth=1,
               label=f"macro F1 {metrics['macro']['f1']:.3f}")
    _legend_under_title(ax, ax.get_legend_handles_labels()[0], 4)
    ax.set_title(f"Per-class precision, recall and F1 ({metrics['evaluated_lines']:,} labelled lines)", pad=26)
    return _png(fig)


def confidence_png(confidence: np.ndarray, predicted_idx: np.ndarray, labels: Sequence[str]) -> bytes:
    """One confidence histogram per predicted label (20 bins over [0, 1]), each with its median."""
    n = len(labels)
    cols = min(n, 3 if n <= 9 else 4)
    rows = math.ceil(n / cols)
    fig = _figure(CHART_SIZE)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    bins = np.linspace(0.0, 1.0, 21)
    colours = class_colours(n)
    for i, name in enumerate(labels):
        ax, values = axes[i], np.asarray(confidence)[predicted_idx == i]
        ax.hist(values, bins=bins, color=colours[i], edgecolor="white", linewidth=0.5)
        if values.size:
            median = float(np.median(values))
            ax.axvline(median, color="#333333", linestyle="--", linewidth=1)
            ax.set_title(f"{_short(name)}\nn={values.size:,}, median {median:.2f}", fontsize=9)
        else:
            ax.text(0.5, 0.5, "never predicted", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.set_title(f"{_short(name)}\nn=0", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=8)
        _thousands(ax, "y")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel("confidence (probability of the predicted label)", fontsize=10)
    fig.supylabel("lines", fontsize=10)
    fig.suptitle("Confidence by predicted label")
    return _png(fig)


def label_counts_png(predicted: dict[str, int], true: dict[str, int] | None = None) -> bytes:
    """Horizontal bars of predicted-label counts (with their share), next to the true counts if any."""
    from matplotlib.patches import Patch

    labels = list(predicted)
    fig = _figure(CHART_SIZE)
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    total = max(sum(predicted.values()), 1)
    height = 0.4 if true is not None else 0.7
    bars = ax.barh(y - (height / 2 if true is not None else 0), list(predicted.values()), height,
                   color=class_colours(len(labels)))
    ax.bar_label(bars, labels=[f"{c:,} ({c / total:.1%})" for c in predicted.values()], fontsize=8, padding=3)
    title = f"Predicted labels ({sum(predicted.values()):,} lines)"
    if true is not None:
        true_bars = ax.barh(y + height / 2, [true.get(n, 0) for n in labels], height, color="#c8c8c8",
                            hatch="//", edgecolor="white")
        ax.bar_label(true_bars, labels=[f"{true.get(n, 0):,}" for n in labels], fontsize=8, padding=3,
                     color="#555555")
        handles = [Patch(facecolor="#777777", label="predicted (colour per label)"),
                   Patch(facecolor="#c8c8c8", hatch="//", edgecolor="white", label="true")]
        _legend_under_title(ax, handles, 2)
        title = f"Predicted and true labels ({total:,} lines, {sum(true.values()):,} with a known true label)"
    ax.set_yticks(y, [_short(n) for n in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, max(list(predicted.values()) + list((true or {}).values()) + [1]) * 1.25)
    _thousands(ax, "x")
    ax.set_xlabel("lines")
    ax.set_title(title, pad=26 if true is not None else 6)
    return _png(fig)
