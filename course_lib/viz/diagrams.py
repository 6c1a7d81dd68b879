"""Schematic diagrams of attention, drawn with matplotlib: boxes, arrows and grids, nothing downloaded.

Each function returns a ``matplotlib.figure.Figure`` about 10 x 3.5 inches (a notebook's
width). The figures are built without pyplot, so a notebook cell that ends with
``qkv_lookup_diagram()`` shows the picture once, and tests can build many without leaking
open figures. Where a diagram shows numbers or masks, they are computed with course_lib's own
functions (``softmax``, ``split_heads``, ``causal_mask``, ``padding_mask``), so the picture is
the real thing, not a drawing of it.

- :func:`qkv_lookup_diagram`: attention as a soft dictionary lookup (chapter 02).
- :func:`mask_patterns_diagram`: none, padding, causal, causal + padding (chapter 04).
- :func:`heads_diagram`: how heads split and merge the model width (chapter 05).
- :func:`encoder_decoder_diagram`: cross-attention between an encoder and a decoder (chapter 06).
- :func:`tiling_diagram`: FlashAttention's tiles and the running max and sum (chapter 09).
"""

from __future__ import annotations

import torch

from .. import _validate as v
from ..attention import softmax
from ..masking import causal_mask, combine_masks, padding_mask
from ..multihead import split_heads

__all__ = [
    "qkv_lookup_diagram",
    "heads_diagram",
    "mask_patterns_diagram",
    "encoder_decoder_diagram",
    "tiling_diagram",
]

#: Size of every diagram, in inches (the width of a notebook cell).
FIGSIZE = (10.0, 3.5)
#: One colour per role, used across the diagrams.
COLORS = {"query": "#4C72B0", "key": "#DD8452", "value": "#55A868", "weight": "#8172B3", "neutral": "#DDDDDD",
          "allowed": "#4C9F70", "blocked": "#E8E8E8", "highlight": "#C44E52"}
HEAD_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def _figure(ncols: int = 1, width_ratios=None):
    """A pyplot-free Figure of FIGSIZE with ``ncols`` axes side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, gridspec_kw={"width_ratios": width_ratios} if width_ratios else None, squeeze=False)[0]
    return fig, list(axes)


def _blank(ax, xlim, ylim) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("auto")
    ax.axis("off")


def _box(ax, x, y, w, h, text, color, fontsize=9, text_color="black", alpha=1.0):
    """A rounded box with its lower-left corner at (x, y) and ``text`` in its middle."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color,
                                edgecolor="black", linewidth=0.8, alpha=alpha))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=text_color)


def _arrow(ax, start, end, text=None, color="black", fontsize=8, offset=(0.0, 0.12), style="-|>"):
    """An arrow from ``start`` to ``end`` with an optional label near its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=color, lw=1.2, shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                va="bottom", fontsize=fontsize, color=color)


# ------------------------------------------------------------------------------------------------
# Chapters 01-02: attention as a soft dictionary lookup.
# ------------------------------------------------------------------------------------------------


def qkv_lookup_diagram():
    """Attention as a soft dictionary lookup: a hard lookup (left) beside attention (right).

    Left: a Python dict; the query equals exactly one key, and that key's value comes back.
    Right: the query is compared with *every* key (scores), the softmax turns the scores into
    weights that sum to 1, and the answer is the weighted sum of *all* the values. The weights
    printed in the figure are computed with :func:`course_lib.attention.softmax` from the
    printed scores.

    Returns:
        matplotlib Figure (10 x 3.5 in) with 2 axes: "hard lookup" and "soft lookup (attention)".
    Taught in: notebooks/02_softmax.ipynb, sec. 6 (query / key / value as a soft dictionary lookup).
    Source: Vaswani et al. 2017, sec. 3.2 ("mapping a query and a set of key-value pairs to an
        output ... a weighted sum of the values"); Graves et al. 2014 (content-based addressing).
    """
    fig, (hard, soft) = _figure(2, width_ratios=[1.0, 1.9])
    keys = ["cat", "dog", "car", "cap"]
    values = ["v_cat", "v_dog", "v_car", "v_cap"]

    _blank(hard, (0, 4.2), (0, 5.2))
    hard.set_title("hard lookup (a Python dict)", fontsize=10)
    _box(hard, 0.1, 2.1, 1.0, 0.7, 'query\n"cat"', COLORS["query"], text_color="white")
    for n, (k, val) in enumerate(zip(keys, values)):
        y = 4.0 - n * 1.05
        match = k == "cat"
        _box(hard, 1.7, y, 0.9, 0.6, f"key\n{k}", COLORS["key"] if match else COLORS["neutral"], fontsize=8)
        _box(hard, 3.0, y, 1.0, 0.6, f"value\n{val}", COLORS["value"] if match else COLORS["neutral"], fontsize=8)
        hard.text(2.8, y + 0.3, "->", ha="center", va="center", fontsize=8)
    _arrow(hard, (1.1, 2.55), (1.7, 4.3), "equal?", color=COLORS["highlight"], offset=(-0.2, 0.0))
    hard.text(2.1, 0.05, "one key matches: its value, nothing else", ha="center", fontsize=8)

    scores = torch.tensor([2.0, 1.0, 0.1, -1.0])  # query . key_j
    weights = softmax(scores)  # course_lib's softmax: these are the printed weights
    _blank(soft, (0, 8.8), (0, 5.2))
    soft.set_title("soft lookup (attention): every key, weighted", fontsize=10)
    _box(soft, 0.1, 2.1, 1.0, 0.7, "query q", COLORS["query"], text_color="white")
    for n in range(len(keys)):
        y = 4.0 - n * 1.05
        _box(soft, 1.6, y, 0.9, 0.6, f"key k{n + 1}", COLORS["key"], fontsize=8)
        _arrow(soft, (1.1, 2.45), (1.6, y + 0.3))
        soft.text(3.05, y + 0.3, f"{scores[n]:+.1f}", ha="center", va="center", fontsize=9)
        width = 1.6 * float(weights[n])  # a bar as long as the weight
        soft.add_patch(__import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (3.9, y + 0.1), width, 0.4, facecolor=COLORS["weight"]))
        soft.text(3.95 + width, y + 0.3, f"{weights[n]:.2f}", ha="left", va="center", fontsize=8)
        _box(soft, 6.0, y, 0.9, 0.6, f"value v{n + 1}", COLORS["value"], fontsize=8)
    soft.text(3.05, 4.85, "scores\nq . k", ha="center", fontsize=8)
    soft.text(4.6, 4.85, "softmax ->\nweights (sum 1)", ha="center", fontsize=8)
    soft.text(6.45, 4.85, "values", ha="center", fontsize=8)
    _box(soft, 7.2, 2.1, 1.5, 0.7, "output =\nweighted sum", COLORS["weight"], fontsize=8, text_color="white")
    for n in range(len(keys)):
        _arrow(soft, (6.9, 4.3 - n * 1.05), (7.2, 2.45), color="gray")
    terms = " + ".join(f"{float(w):.2f} v{n + 1}" for n, w in enumerate(weights))
    soft.text(4.2, 0.05, f"output = {terms}", ha="center", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Chapter 04: mask patterns.
# ------------------------------------------------------------------------------------------------


def mask_patterns(L: int = 6, pad: int = 2) -> dict[str, torch.Tensor]:
    """The four (L, L) boolean masks that :func:`mask_patterns_diagram` draws (True = may attend).

    ``padding`` is a sentence of ``L - pad`` real tokens and ``pad`` padding tokens: every query
    may attend to the real keys only (``padding_mask`` broadcast over the queries).
    """
    causal = causal_mask(L)  # (L, L)
    padding = padding_mask([L - pad], S=L).expand(L, L)  # (1, S) -> (L, S)
    return {"none": torch.ones(L, L, dtype=torch.bool), "padding": padding, "causal": causal,
            "causal + padding": combine_masks(causal, padding)}


def mask_patterns_diagram(L: int = 6):
    """The four mask patterns side by side: none, padding, causal, causal + padding.

    Each panel is an (L, L) boolean mask (rows: queries, columns: keys), drawn with two colours
    and a legend: allowed (True, may attend) and blocked (False, score set to -inf). The masks
    are computed with :func:`course_lib.masking.causal_mask`, :func:`~course_lib.masking.padding_mask`
    and :func:`~course_lib.masking.combine_masks`, for a sentence whose last 2 tokens are padding.

    Args:
        L: sequence length (3 to 16), queries and keys.
    Returns:
        matplotlib Figure (10 x 3.5 in) with 4 axes, one image each (the mask as 0 / 1), and a
        figure legend with two entries.
    Raises:
        TypeError: if L is not an int.  ValueError: if L is outside 3 .. 16.
    Taught in: notebooks/04_masking.ipynb.
    Source: Vaswani et al. 2017, sec. 3.2.3 (masking with -inf).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    L = v.positive_int(L, "L", "mask_patterns_diagram")
    if not 3 <= L <= 16:
        raise ValueError(f"mask_patterns_diagram: L must be in 3 .. 16 (readable cells), got {L}")
    fig, axes = _figure(4)
    cmap = ListedColormap([COLORS["blocked"], COLORS["allowed"]])
    for ax, (name, mask) in zip(axes, mask_patterns(L).items()):
        ax.imshow(mask.to(torch.uint8).numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ticks = [str(j) if j < L - 2 else "pad" for j in range(L)]  # the last 2 positions are padding
        ax.set_xticks(range(L), ticks, fontsize=7)
        ax.set_yticks(range(L), ticks, fontsize=7)  # pad queries too: the padding mask blocks keys, not queries
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        ax.set_xticks([x - 0.5 for x in range(1, L)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, L)], minor=True)
        ax.grid(which="minor", color="white", linewidth=1)
        ax.tick_params(which="minor", length=0)
    handles = [Patch(facecolor=COLORS["allowed"], edgecolor="gray", label="allowed (True: may attend)"),
               Patch(facecolor=COLORS["blocked"], edgecolor="gray", label="blocked (False: score -> -inf)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


# ------------------------------------------------------------------------------------------------
# Chapter 05: heads.
# ------------------------------------------------------------------------------------------------


def _grid(ax, x, y, values, colors, cell=0.32, fontsize=7):
    """Draw a (rows, cols) grid of numbered cells with its top-left corner at (x, y)."""
    from matplotlib.patches import Rectangle

    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((x + c * cell, y - (r + 1) * cell), cell, cell, facecolor=colors[r][c],
                                   edgecolor="white", linewidth=1))
            ax.text(x + (c + 0.5) * cell, y - (r + 0.5) * cell, str(int(values[r, c])), ha="center", va="center",
                    fontsize=fontsize, color="white")
    return x + cols * cell, y - rows * cell  # bottom-right corner


def heads_diagram(embed_dim: int = 8, num_heads: int = 2, tokens: int = 3):
    """How multi-head attention splits the model width into heads and merges it back.

    (B, T, D) --split_heads--> (B, H, T, D/H) --attention in each head--> (B, H, T, D/H)
    --merge_heads (concat)--> (B, T, D) --W_O--> (B, T, D). Each cell shows a feature index
    and each colour a head; the split grids are the real output of
    :func:`course_lib.multihead.split_heads` applied to the feature indices, so head h holds
    features ``h * D/H .. (h + 1) * D/H - 1`` of *every* token. The grid that is split is a
    projected query ``x W_Q`` (keys and values are split the same way): the heads split the
    projections' output, not the raw input.

    Args:
        embed_dim: D (2 to 16).  num_heads: H, must divide D.  tokens: T (1 to 5).
    Returns:
        matplotlib Figure (10 x 3.5 in) with 1 axes.
    Raises:
        TypeError: if a size is not an int.  ValueError: if num_heads does not divide embed_dim
            or a size is outside its range.
    Taught in: notebooks/05_multi_head.ipynb.
    Source: Vaswani et al. 2017, sec. 3.2.2 (MultiHead(Q, K, V) = Concat(head_1..head_h) W^O).
    """
    fn = "heads_diagram"
    D = v.positive_int(embed_dim, "embed_dim", fn)
    H = v.positive_int(num_heads, "num_heads", fn)
    T = v.positive_int(tokens, "tokens", fn)
    if D % H:
        raise ValueError(f"{fn}: num_heads={H} must divide embed_dim={D}")
    if not (2 <= D <= 16 and T <= 5 and H <= len(HEAD_COLORS)):
        raise ValueError(f"{fn}: embed_dim must be 2..16, tokens 1..5 and num_heads <= 8 to stay readable, "
                         f"got embed_dim={D}, num_heads={H}, tokens={T}")
    Dh = D // H
    features = torch.arange(D).expand(1, T, D)  # (B=1, T, D): cell = its feature index
    heads = split_heads(features, H)[0]  # (1, T, D) -> (1, H, T, Dh) -> (H, T, Dh)
    head_of = lambda f: HEAD_COLORS[int(f) // Dh]  # noqa: E731  the head a feature belongs to

    fig, (ax,) = _figure(1)
    cell = min(0.32, 2.6 / D)
    top = 3.6
    gap = T * cell + 0.3  # vertical distance between two heads
    y_low = top + 0.4 - (H - 1) * gap - T * cell  # bottom of the last head's grid
    _blank(ax, (0, 15.0), (y_low - 0.65, 4.4))  # down to the shape captions below the last head
    colours = [[head_of(f) for f in row] for row in features[0]]
    x_end, _ = _grid(ax, 0.2, top, features[0], colours, cell)
    mid = top - T * cell / 2
    ax.text(0.2 + D * cell / 2, top + 0.15, f"Q (or K, V) = x W_Q: (B, T, D)\nD = {D}, T = {T} tokens",
            ha="center", fontsize=8)
    x_split = x_end + 1.3
    _arrow(ax, (x_end + 0.1, mid), (x_split - 0.1, mid), "split_heads")
    x_att = x_split + Dh * cell + 0.6
    x_merge = x_att + 2.6
    for h in range(H):
        y = top + 0.4 - h * gap
        _grid(ax, x_split, y, heads[h], [[HEAD_COLORS[h]] * Dh for _ in range(T)], cell)
        ax.text(x_split - 0.05, y - T * cell / 2, f"head {h}", ha="right", va="center", fontsize=7)
        _box(ax, x_att, y - T * cell, 1.7, T * cell, f"attention\nin head {h}", HEAD_COLORS[h], fontsize=7,
             text_color="white", alpha=0.85)
        _arrow(ax, (x_split + Dh * cell + 0.05, y - T * cell / 2), (x_att - 0.05, y - T * cell / 2))
        _arrow(ax, (x_att + 1.75, y - T * cell / 2), (x_merge - 0.1, mid), color="gray")
    ax.text(x_split - 0.9, y_low - 0.15, f"(B, H, T, D/H)\n= (B, {H}, T, {Dh})", ha="left", va="top", fontsize=8)
    ax.text(x_att, y_low - 0.15, "softmax(Q K^T / sqrt(d_k)) V\nd_k = D/H per head", ha="left", va="top", fontsize=8)
    x_end, _ = _grid(ax, x_merge, top, features[0], colours, cell)
    ax.text(x_merge + D * cell / 2, top + 0.15, "merge_heads: concat\n(B, T, D)", ha="center", fontsize=8)
    _box(ax, x_end + 0.6, top - T * cell, 1.0, T * cell, "W_O\n(D x D)", COLORS["neutral"], fontsize=8)
    _arrow(ax, (x_end + 0.05, mid), (x_end + 0.55, mid))
    _box(ax, x_end + 2.0, top - T * cell, 1.1, T * cell, "output\n(B, T, D)", COLORS["weight"], fontsize=8,
         text_color="white")
    _arrow(ax, (x_end + 1.65, mid), (x_end + 1.95, mid))
    ax.text(x_end + 1.1, top - T * cell - 0.15, "W_O mixes\nthe heads", ha="center", va="top", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Chapter 06: encoder-decoder.
# ------------------------------------------------------------------------------------------------


def encoder_decoder_diagram():
    """Encoder-decoder data flow: queries from the decoder, keys and values from the encoder.

    The encoder reads the whole source sentence (S tokens, self-attention without a causal
    mask) and hands its output, the "memory" (B, S, D), to every decoder layer. In each decoder
    layer, the masked (causal) self-attention looks at the target tokens so far, then the
    cross-attention takes its *queries* from the decoder (L target positions) and its *keys
    and values* from the encoder's memory (S source positions): the weights are (L, S), and L
    need not equal S.

    Returns:
        matplotlib Figure (10 x 3.5 in) with 1 axes.
    Taught in: notebooks/06_cross_attention.ipynb.
    Source: Vaswani et al. 2017, sec. 3.2.3 ("encoder-decoder attention" layers) and fig. 1;
        Bahdanau et al. 2015, sec. 3.
    """
    fig, (ax,) = _figure(1)
    _blank(ax, (0, 12.5), (0, 4.6))
    # Encoder (left).
    src = ["the", "red", "cars"]
    for n, word in enumerate(src):
        _box(ax, 0.3 + n * 1.0, 0.15, 0.85, 0.45, word, COLORS["neutral"], fontsize=8)
        _arrow(ax, (0.72 + n * 1.0, 0.6), (0.72 + n * 1.0, 1.05))
    _box(ax, 0.2, 1.1, 3.0, 0.8, "encoder self-attention\n(no causal mask) + FFN,  x N", COLORS["key"], fontsize=8)
    _arrow(ax, (1.7, 1.9), (1.7, 2.6))
    _box(ax, 0.6, 2.65, 2.2, 0.65, "memory (B, S, D)\nS = 3 source tokens", COLORS["value"], fontsize=8,
         text_color="white")
    ax.text(1.7, 4.25, "ENCODER (reads the source)", ha="center", fontsize=9, weight="bold")
    # Decoder (right).
    tgt = ["<bos>", "les", "voitures", "rouges"]
    for n, word in enumerate(tgt):
        _box(ax, 6.3 + n * 1.15, 0.15, 1.0, 0.45, word, COLORS["neutral"], fontsize=8)
        _arrow(ax, (6.8 + n * 1.15, 0.6), (6.8 + n * 1.15, 1.05))
    _box(ax, 6.2, 1.1, 4.6, 0.6, "masked (causal) self-attention over the target", COLORS["query"], fontsize=8,
         text_color="white")
    _arrow(ax, (8.5, 1.7), (8.5, 2.25), "queries (B, L, D)", color=COLORS["query"], offset=(0.9, -0.1))
    _box(ax, 6.2, 2.3, 4.6, 0.75, "cross-attention: softmax(Q K^T / sqrt(d_k)) V\nweights (B, L, S), L = 4, S = 3",
         COLORS["weight"], fontsize=8, text_color="white")
    _arrow(ax, (2.8, 2.98), (6.2, 2.68), "keys and values from the encoder", color=COLORS["value"], offset=(0, 0.05))
    _arrow(ax, (8.5, 3.05), (8.5, 3.55), "FFN, x N", offset=(0.7, -0.12))
    _box(ax, 7.0, 3.6, 3.0, 0.45, "next-token logits (B, L, V)", COLORS["neutral"], fontsize=8)
    ax.text(8.5, 4.25, "DECODER (writes the target)", ha="center", fontsize=9, weight="bold")
    ax.text(4.6, 3.75, "queries from the decoder,\nkeys / values from the encoder", ha="center", fontsize=8,
            style="italic")
    ax.text(11.6, 1.4, "(shifted right:\nteacher forcing)", ha="center", fontsize=7, color="gray")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Chapter 09: tiling.
# ------------------------------------------------------------------------------------------------


def tiling_diagram(L: int = 8, S: int = 8, block_rows: int = 4, block_cols: int = 4, seed: int = 0):
    """FlashAttention's tiles: the (L, S) score matrix cut into B_r x B_c tiles, one of them in work.

    Left: the score matrix, queries Q split into blocks of ``block_rows`` (B_r) rows, keys K
    (and values V) into blocks of ``block_cols`` (B_c) columns; the highlighted tile is the
    current step (the last query block against the last key block), the tiles already done are
    hatched. Only one tile of scores exists at a time: the (L, S) matrix is never stored.
    Right: for each query row of the highlighted block, the running max ``m`` and running sum
    ``l = sum exp(s - m)`` after each key block, computed from seeded random scores with the
    online-softmax update ``m' = max(m, rowmax(tile))``, ``l' = l exp(m - m') + rowsum(exp(tile - m'))``,
    and the output's update in the same pass: the weights exp(s - m) / l are never formed; the
    output O = acc / l comes out at the end.

    Args:
        L, S: number of queries and keys (2 to 16).  block_rows: B_r.  block_cols: B_c (each at
            least 1 and at most L or S).  seed: seed of the example scores.
    Returns:
        matplotlib Figure (10 x 3.5 in) with 2 axes: the tiled score matrix, and the table of m and l.
    Raises:
        TypeError: if a size is not an int.  ValueError: if a size is out of range.
    Taught in: notebooks/09_efficient_attention.ipynb.
    Source: Dao et al. 2022, "FlashAttention", Algorithm 1 (lines 9-12: m_i, l_i, tiles of B_r x B_c).
    """
    from matplotlib.patches import Rectangle

    fn = "tiling_diagram"
    L, S = v.positive_int(L, "L", fn), v.positive_int(S, "S", fn)
    Br, Bc = v.positive_int(block_rows, "block_rows", fn), v.positive_int(block_cols, "block_cols", fn)
    if not (2 <= L <= 16 and 2 <= S <= 16 and Br <= L and Bc <= S):
        raise ValueError(f"{fn}: need 2 <= L, S <= 16, block_rows <= L and block_cols <= S, got L={L}, S={S}, "
                         f"block_rows={Br}, block_cols={Bc}")
    Tr, Tc = -(-L // Br), -(-S // Bc)  # number of query and key blocks (ceil)
    qi, kj = Tr - 1, Tc - 1  # the highlighted tile: the last step of the last query block
    scores = torch.randn(L, S, generator=torch.Generator().manual_seed(seed))  # (L, S) example scores

    fig, (left, right) = _figure(2, width_ratios=[1.2, 1.0])
    left.set_xlim(-2.2, S + 0.3)
    left.set_ylim(L + 0.2, -2.4)
    left.set_aspect("equal")
    left.axis("off")
    for i in range(Tr):  # Q blocks on the left
        r0, r1 = i * Br, min(L, (i + 1) * Br)
        left.add_patch(Rectangle((-1.6, r0), 1.2, r1 - r0, facecolor=COLORS["query"], edgecolor="white",
                                 alpha=1.0 if i == qi else 0.45))
        left.text(-1.0, (r0 + r1) / 2, f"Q{i}", ha="center", va="center", fontsize=8, color="white")
    for j in range(Tc):  # K blocks on top
        c0, c1 = j * Bc, min(S, (j + 1) * Bc)
        left.add_patch(Rectangle((c0, -1.6), c1 - c0, 1.2, facecolor=COLORS["key"], edgecolor="white",
                                 alpha=1.0 if j == kj else 0.45))
        left.text((c0 + c1) / 2, -1.0, f"K{j}, V{j}", ha="center", va="center", fontsize=8, color="white")
    for i in range(Tr):
        for j in range(Tc):
            r0, r1, c0, c1 = i * Br, min(L, (i + 1) * Br), j * Bc, min(S, (j + 1) * Bc)
            current = (i, j) == (qi, kj)
            done = i < qi or (i == qi and j < kj)
            left.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=COLORS["highlight"] if current else "white",
                                     edgecolor="black", linewidth=1.5, alpha=0.8 if current else 1.0,
                                     hatch="///" if done else None))
    left.text(S / 2, L + 0.1, f"scores S = Q K^T ({L} x {S}) in tiles of B_r x B_c = {Br} x {Bc}",
              ha="center", va="top", fontsize=8)
    left.text(-2.1, -2.2, "query block i (B_r rows), key/value block j (B_c columns); hatched: tiles done,\n"
              "their scores already discarded; red: the current tile, the only scores in memory", fontsize=8,
              va="bottom")

    # Right: the running m and l of the highlighted query block after each key block.
    rows = range(qi * Br, min(L, (qi + 1) * Br))
    m = torch.full((len(rows),), float("-inf"))
    l = torch.zeros(len(rows))
    table = []
    for j in range(Tc):
        tile = scores[qi * Br:(qi + 1) * Br, j * Bc:(j + 1) * Bc]  # (B_r, B_c)
        m_new = torch.maximum(m, tile.amax(dim=-1))  # (B_r,)
        l = l * torch.exp(m - m_new) + torch.exp(tile - m_new[:, None]).sum(dim=-1)  # rescale, then add
        m = m_new
        table.append((m.clone(), l.clone()))
    _blank(right, (0, 1 + 2 * Tc), (len(rows) + 1.6, -1.2))
    right.set_title(f"running max m and sum l of block Q{qi}, per query row", fontsize=9)
    right.text(0.5, -0.3, "query", ha="center", fontsize=8, weight="bold")
    for j in range(Tc):
        right.text(1.5 + 2 * j, -0.75, f"after K{j}", ha="center", fontsize=8, weight="bold",
                   color=COLORS["highlight"] if j == kj else "black")
        right.text(1.1 + 2 * j, -0.3, "m", ha="center", fontsize=8)
        right.text(1.9 + 2 * j, -0.3, "l", ha="center", fontsize=8)
    for r, row in enumerate(rows):
        right.text(0.5, r + 0.5, str(row), ha="center", va="center", fontsize=8)
        for j, (m_j, l_j) in enumerate(table):
            right.text(1.1 + 2 * j, r + 0.5, f"{float(m_j[r]):.2f}", ha="center", va="center", fontsize=8)
            right.text(1.9 + 2 * j, r + 0.5, f"{float(l_j[r]):.2f}", ha="center", va="center", fontsize=8)
    right.text(0.0, len(rows) + 0.5, "m' = max(m, rowmax(tile));  l' = l exp(m - m') + rowsum(exp(tile - m'))",
               fontsize=7.5, va="center")
    right.text(0.0, len(rows) + 1.0, "acc' = acc exp(m - m') + exp(tile - m') V_j  (same pass, same rescaling)",
               fontsize=7.5, va="center")
    right.text(0.0, len(rows) + 1.5, "at the end: O = acc / l = softmax(S) V, exact; no weight is ever stored",
               fontsize=7.5, va="center")
    fig.tight_layout()
    return fig
