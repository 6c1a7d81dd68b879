"""Schematic diagrams (course_lib.viz.diagrams): the right panels, the concepts named, real masks and numbers, nothing fetched."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from course_lib.masking import causal_mask, padding_mask
from course_lib.viz import (
    encoder_decoder_diagram,
    heads_diagram,
    mask_patterns_diagram,
    qkv_lookup_diagram,
    tiling_diagram,
)

DIAGRAMS = {
    qkv_lookup_diagram: 2,
    heads_diagram: 1,
    mask_patterns_diagram: 4,
    encoder_decoder_diagram: 1,
    tiling_diagram: 2,
}


def texts(fig) -> list[str]:
    """Every string drawn in the figure: text artists, titles, axis and tick labels, legend entries."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def joined(fig) -> str:
    return " ".join(texts(fig)).lower()


@pytest.mark.parametrize("make, n_axes", DIAGRAMS.items(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_returns_a_notebook_width_figure_with_its_panels_and_fetches_nothing(make, n_axes):
    fig = make()
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    width, height = fig.get_size_inches()
    assert (width, height) == (10.0, 3.5)
    for artist in fig.findobj():
        assert getattr(artist, "get_url", lambda: None)() is None, artist  # no link in any artist
    for text in texts(fig):
        assert "http" not in text and "://" not in text
    fig.canvas.draw()  # renders offline without error
    assert make.__doc__ and "Taught in: notebooks/" in make.__doc__


def test_pyplot_does_not_keep_the_figures():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    for make in DIAGRAMS:
        make()
    assert len(plt.get_fignums()) == before  # a notebook cell shows the returned figure once


def test_qkv_lookup_names_the_concepts_and_its_weights_are_the_softmax_of_its_scores():
    fig = qkv_lookup_diagram()
    words = joined(fig)
    for concept in ("query", "key", "value", "scores", "softmax", "weights", "weighted sum", "hard lookup"):
        assert concept in words, concept
    scores = [float(t) for t in texts(fig) if t.startswith(("+", "-")) and t[1:].replace(".", "").isdigit()]
    assert len(scores) == 4
    expected = torch.softmax(torch.tensor(scores), dim=0)
    shown = [float(t) for t in texts(fig) if t.startswith("0.") and len(t) == 4]
    assert shown == pytest.approx(expected.tolist(), abs=0.006)
    assert math.isclose(sum(shown), 1.0, abs_tol=0.02)


def test_mask_patterns_are_the_real_masks_in_two_colours_with_a_two_entry_legend():
    L = 6
    fig = mask_patterns_diagram(L)
    causal = causal_mask(L)
    padding = padding_mask([L - 2], S=L).expand(L, L)
    expected = {"none": torch.ones(L, L, dtype=torch.bool), "padding": padding, "causal": causal,
                "causal + padding": causal & padding}
    for ax in fig.axes:
        (image,) = ax.images
        data = torch.as_tensor(image.get_array()).bool()
        assert torch.equal(data, expected[ax.get_title()]), ax.get_title()
        assert image.get_cmap().N == 2  # a two-colour map
        assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == 2 and "allowed" in labels[0] and "blocked" in labels[1]
    # the legend's colours are the image's two colours (blocked = 0, allowed = 1)
    cmap = fig.axes[0].images[0].get_cmap()
    import matplotlib.colors as mcolors
    handle_colours = [mcolors.to_hex(h.get_facecolor()) for h in legend.legend_handles]
    assert handle_colours == [mcolors.to_hex(cmap(1)), mcolors.to_hex(cmap(0))]


@pytest.mark.parametrize("L", [3, 9])
def test_mask_patterns_other_lengths(L):
    fig = mask_patterns_diagram(L)
    assert torch.equal(torch.as_tensor(fig.axes[2].images[0].get_array()).bool(), causal_mask(L))


@pytest.mark.parametrize("D, H", [(8, 2), (12, 4), (6, 1)])
def test_heads_diagram_shows_which_features_each_head_gets(D, H):
    fig = heads_diagram(D, H)
    words = joined(fig)
    for concept in ("split_heads", "merge_heads", "concat", "w_o", "(b, t, d)", f"(b, {H}, t, {D // H})", "head 0"):
        assert concept in words, concept
    assert f"head {H - 1}" in words and f"head {H}" not in words
    # The numbers drawn in the cells: input and merged grids (2 * T * D) and the heads (T * D);
    # each feature index appears 3 times per token.
    numbers = [int(t) for t in texts(fig) if t.isdigit()]
    T = 3
    assert sorted(numbers) == sorted(list(range(D)) * 3 * T)


def test_encoder_decoder_names_queries_keys_values_and_cross_attention():
    words = joined(encoder_decoder_diagram())
    for concept in ("encoder", "decoder", "cross-attention", "queries", "keys", "values", "masked (causal)",
                    "(b, l, s)", "memory (b, s, d)"):
        assert concept in words, concept


def test_tiling_diagram_has_the_tiles_and_the_true_running_max_and_sum():
    L, S, Br, Bc = 8, 8, 4, 4
    fig = tiling_diagram(L, S, Br, Bc, seed=0)
    words = joined(fig)
    for concept in ("q0", "q1", "k0, v0", "k1, v1", "b_r x b_c = 4 x 4", "running max m", "after k1"):
        assert concept in words, concept
    # After the last key block, m is the row max and l = sum exp(s - m) over the whole row (exact).
    scores = torch.randn(L, S, generator=torch.Generator().manual_seed(0))[Br:]  # the highlighted query block
    m = scores.max(dim=-1).values
    l = torch.exp(scores - m[:, None]).sum(-1)
    shown = set(texts(fig))
    for value in [*m.tolist(), *l.tolist()]:
        assert f"{value:.2f}" in shown, value
    assert len(fig.axes[0].patches) == 2 + 2 + 4  # Q blocks, K blocks, tiles


@pytest.mark.parametrize("call, error, word", [
    (lambda: heads_diagram(8, 3), ValueError, "num_heads"),
    (lambda: heads_diagram(8.0, 2), TypeError, "embed_dim"),
    (lambda: mask_patterns_diagram(2), ValueError, "L"),
    (lambda: tiling_diagram(8, 8, 9, 4), ValueError, "block_rows"),
    (lambda: tiling_diagram(8, 8, 0, 4), ValueError, "block_rows"),
])
def test_bad_sizes_name_the_argument(call, error, word):
    with pytest.raises(error, match=word):
        call()
