"""The book's figure style, set in one place and applied explicitly by the chapters.

Nothing happens at import time: a chapter calls :func:`use_book_style` once, near its
imports. The style makes every text in a figure at least :data:`MIN_FONT_PT` points,
which is 80% or more of the book's body text when a figure is shown at its natural
size (the figures are at most :data:`MAX_WIDTH_IN` inches wide, so the text column
never has to shrink them), and renders inline figures as SVG with stable ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BODY_TEXT_PX", "BOOK_RC", "MAX_WIDTH_IN", "MIN_FONT_PT", "budget_chart",
           "use_book_style"]

BODY_TEXT_PX = 16.0
"""Body text size of the book's HTML theme (sphinx-book-theme), in CSS pixels."""

MIN_FONT_PT = 10.0
"""Smallest text in a figure: 10 pt = 13.3 CSS px, at least 80% of the body text."""

MAX_WIDTH_IN = 7.5
"""Widest figure (7.5 in = 720 CSS px): fits the text column of a 1300-px window."""

BOOK_RC: dict[str, Any] = {
    "font.size": 11.0,
    "axes.titlesize": 12.0,
    "axes.labelsize": 11.0,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": 11.0,
    "figure.titlesize": 12.0,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "svg.fonttype": "none",  # text stays text: smaller files, searchable, crisp
    "svg.hashsalt": "resnet-nb",  # the same figure gives the same SVG ids every run
}
"""The rcParams :func:`use_book_style` sets."""


def use_book_style(svg: bool = True) -> None:
    """Apply :data:`BOOK_RC` and, inside IPython, show inline figures as SVG.

    SVG output carries no creation date, so re-running a chapter leaves an
    unchanged figure unchanged in the notebook.
    """
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_RC)
    if not svg:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's tools
        return
    if get_ipython() is None:
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("svg", metadata={"Date": None})


def budget_chart(
    budgets: Sequence[int],
    accuracy: Mapping[str, Sequence[float]],
    *,
    spread: Mapping[str, Sequence[float]] | None = None,
    title: str = "",
) -> Any:
    """Test accuracy (%) against labelled images per class (log axis), a line a strategy.

    ``accuracy`` maps each strategy to its accuracies (fractions), one per budget;
    ``spread``, in the same shape, draws error bars of that size either side (the
    standard deviation over seeds), with the strategies nudged apart so the bars do
    not hide each other. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, values) in enumerate(accuracy.items()):
        shift = 1.0 if spread is None else 1 + 0.03 * (i - (len(accuracy) - 1) / 2)
        ax.errorbar([k * shift for k in budgets], [v * 100 for v in values],
                    yerr=None if spread is None else [v * 100 for v in spread[name]],
                    marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(list(budgets), [str(k) for k in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", framealpha=0.8)
    fig.tight_layout()
    return fig
