"""Pictures of attention, drawn with matplotlib (no JavaScript, no network).

``plot_attention`` draws one attention matrix; ``plot_head_grid`` draws one map per (layer, head).
The interactive explorers live in :mod:`course_lib.viz.explorers`, which imports this module
(never the reverse).

Taught in: notebooks/01_dot_products.ipynb onwards.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import _validate as v

__all__ = ["plot_attention", "plot_head_grid"]


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


def plot_head_grid(maps, title: str | None = None, row: int | None = None, ax=None, figsize=(12, 6.2)):
    """Draw every (layer, head) attention map of one input as one mosaic, on one colour scale.

    Block (l, h) of the mosaic is layer l, head h (0-based); inside a block, rows are queries and
    columns keys, as in :func:`plot_attention`. All blocks share the colour scale 0..1 (attention
    weights), so they can be compared at a glance; a blank border separates them.

    Args:
        maps: tensor or array (N, H, T, T) of attention weights: N layers, H heads, T tokens.
            Any device or dtype (copied to the CPU as float32).
        title: optional title.
        row: optional query index to mark with a thin red line in every layer (e.g. "it").
        ax: a matplotlib Axes to draw on; a new figure of size ``figsize`` is made if None.
        figsize: (width, height) in inches of a new figure.
    Returns:
        the matplotlib Axes.
    Shape:
        maps (N, H, T, T)
    Raises:
        TypeError: if maps is not a tensor or array.
        ValueError: if maps is not 4-D with square (T, T) maps, or row is outside 0..T-1.
    Taught in: notebooks/10_pretrained_attention.ipynb.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fn = "plot_head_grid"
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{fn}: maps must be a torch.Tensor or numpy array, got {type(maps).__name__}")
    if maps.dim() != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"{fn}: maps must be (N, H, T, T) (layers, heads, queries, keys), got {v.shape_str(maps)}")
    n_layers, n_heads, T = maps.shape[:3]
    if row is not None and not (isinstance(row, int) and 0 <= row < T):
        raise ValueError(f"{fn}: row must be a query index in 0..{T - 1}, got {row!r}")
    m = maps.detach().to("cpu", torch.float32)
    framed = torch.nn.functional.pad(m, (0, 1, 0, 1), value=float("nan"))  # (N, H, T+1, T+1): a blank border
    mosaic = framed.permute(0, 2, 1, 3).reshape(n_layers * (T + 1), n_heads * (T + 1))  # (N, T+1, H, T+1) -> 2-D
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # white: the NaN borders
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, dpi=70)
    image = ax.imshow(mosaic.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([h * (T + 1) + T / 2 for h in range(n_heads)], [f"head {h}" for h in range(n_heads)], fontsize=8)
    ax.set_yticks([l * (T + 1) + T / 2 for l in range(n_layers)], [f"layer {l}" for l in range(n_layers)], fontsize=8)
    if row is not None:
        ax.hlines([l * (T + 1) + row for l in range(n_layers)], -0.5, mosaic.shape[1] - 1.5, color="red", lw=0.6)
    ax.figure.colorbar(image, ax=ax, fraction=0.02, label="attention weight")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
