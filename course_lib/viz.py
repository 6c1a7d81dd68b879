"""Pictures of attention, drawn with matplotlib (no JavaScript, no network).

``plot_attention`` draws one attention matrix. The interactive explorers (``softmax_explorer``,
``attention_explorer``, ``positional_explorer``, built on ipywidgets, with a static figure when no
widget frontend is present) live in :mod:`course_lib.explorers` and are importable from here too;
they are loaded on first use, so importing course_lib does not import ipywidgets.

Taught in: notebooks/01_dot_products.ipynb onwards.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _validate as v

__all__ = ["plot_attention", "softmax_explorer", "attention_explorer", "positional_explorer"]

_EXPLORERS = ("softmax_explorer", "attention_explorer", "positional_explorer")


def __getattr__(name: str):
    """``course_lib.viz.softmax_explorer`` etc.: the explorers, imported on first use."""
    if name in _EXPLORERS:
        from . import explorers

        return getattr(explorers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plot_attention(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = "viridis",
):
    """Draw an attention matrix as a heatmap: one row per query, one column per key.

    Args:
        weights: a (L, S) tensor or array (attention weights or scores); leading dims of size 1
            are squeezed. Any device or dtype (it is copied to the CPU as float32).
        query_labels: L strings for the rows (e.g. the tokens), optional.
        key_labels: S strings for the columns, optional (default: ``query_labels`` when L == S).
        ax: a matplotlib Axes to draw on; a new figure is made if None.
        title: optional title.
        annotate: write each value in its cell (default: when L * S <= 144).
        cmap: a matplotlib colormap name.
    Returns:
        the matplotlib Axes.
    Shape:
        weights (L, S)
    Raises:
        TypeError: if weights is not a tensor or array.
        ValueError: if weights is not 2-D after squeezing, or a label list has the wrong length.
    Taught in: notebooks/01_dot_products.ipynb (scores), notebooks/02_softmax.ipynb (weights).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fn = "plot_attention"
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(weights)
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{fn}: weights must be a torch.Tensor or numpy array, got {type(weights).__name__}")
    w = weights.detach().to("cpu", torch.float32)
    while w.dim() > 2 and w.shape[0] == 1:
        w = w[0]
    if w.dim() != 2:
        raise ValueError(f"{fn}: weights must be (L, S), got shape {v.shape_str(weights)}")
    L, S = w.shape
    if key_labels is None and query_labels is not None and L == S:
        key_labels = query_labels
    for name, labels, n in (("query_labels", query_labels, L), ("key_labels", key_labels, S)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{fn}: {name} has {len(labels)} labels but weights {v.shape_str(w)} needs {n}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.5 * S + 1.5), max(2.5, 0.45 * L + 1.0)))
    finite = w[torch.isfinite(w)]
    vmin = float(finite.min()) if finite.numel() else 0.0
    vmax = float(finite.max()) if finite.numel() else 1.0
    image = ax.imshow(w.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(S))
    ax.set_yticks(range(L))
    ax.set_xticklabels(key_labels if key_labels is not None else range(S), rotation=45, ha="right")
    ax.set_yticklabels(query_labels if query_labels is not None else range(L))
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if annotate is None:
        annotate = L * S <= 144
    if annotate:
        middle = (vmin + vmax) / 2
        for i in range(L):
            for j in range(S):
                value = float(w[i, j])
                text = "-inf" if value == float("-inf") else f"{value:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="black" if value > middle else "white")
    if title:
        ax.set_title(title)
    return ax
