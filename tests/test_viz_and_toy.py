"""course_lib.viz and course_lib.data.toy."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import dot_product_scores, softmax  # noqa: E402
from course_lib.data.toy import FEATURES, SENTENCE, embed, sentence_embeddings, tokenize  # noqa: E402
from course_lib.viz import plot_attention  # noqa: E402


def test_plot_attention_draws_the_matrix_with_labels():
    w = softmax(torch.randn(3, 4))
    ax = plot_attention(w, ["a", "b", "c"], ["w", "x", "y", "z"], title="t")
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(image), w.numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 12  # annotated cells
    plt.close("all")


def test_plot_attention_squeezes_and_accepts_numpy_and_masked_scores():
    scores = torch.tensor([[[0.0, float("-inf")], [1.0, 2.0]]])
    ax = plot_attention(scores.numpy())
    assert "-inf" in [t.get_text() for t in ax.texts]
    plt.close("all")


@pytest.mark.parametrize("bad, error", [([[1.0]], TypeError), (torch.ones(2, 2, 2), ValueError)])
def test_plot_attention_bad_input(bad, error):
    with pytest.raises(error, match="weights"):
        plot_attention(bad)


def test_plot_attention_label_count():
    with pytest.raises(ValueError, match="query_labels"):
        plot_attention(torch.ones(2, 3), query_labels=["a"])


def test_tokenize_and_embed_the_running_example():
    tokens, x = sentence_embeddings()
    assert tokens == ["The", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired", "."]
    assert tokenize(SENTENCE) == tokens and x.shape == (len(tokens), len(FEATURES))
    assert torch.equal(x[0], x[4])  # "The" and "the" share a vector
    scores = dot_product_scores(x, x)  # (T, T)
    it, cat, mat = tokens.index("it"), tokens.index("cat"), tokens.index("mat")
    assert scores[it, cat] > scores[it, mat]  # the story the hand-made vectors tell
    with pytest.raises(ValueError, match="dog"):
        embed(["dog"])
    with pytest.raises(TypeError):
        tokenize(3)


def test_plot_head_grid_draws_every_layer_and_head_on_one_scale():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.viz import plot_head_grid

    maps = torch.softmax(torch.randn(3, 4, 5, 5), dim=-1)  # (N, H, T, T)
    ax = plot_head_grid(maps, "grid", row=2)
    image = ax.get_images()[0]
    assert image.get_array().shape == (3 * 6, 4 * 6)  # N x (T + 1) rows, H x (T + 1) columns (a blank border)
    assert image.get_clim() == (0, 1)  # one colour scale for every head
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"head {h}" for h in range(4)]
    assert len(ax.collections) == 1 and len(ax.collections[0].get_segments()) == 3  # the query row, once per layer
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="maps"):
        plot_head_grid(torch.rand(4, 5, 5))
    with pytest.raises(ValueError, match="row"):
        plot_head_grid(maps, row=5)
