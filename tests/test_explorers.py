"""course_lib.viz.explorers: the interactive explorers (ipywidgets + matplotlib) and their static fallback.

Every number an explorer shows is recomputed here independently (numpy, the formula, PyTorch's
own functions); a change of a control must change the figure's PNG bytes and the numbers.
"""

import base64
import math

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import course_lib.viz  # noqa: E402
from course_lib.viz import explorers  # noqa: E402
from course_lib.viz import widgets as widgets_module  # noqa: E402
from course_lib.viz.explorers import attention_explorer, positional_explorer, softmax_explorer  # noqa: E402
from course_lib.multihead import MultiHeadAttention  # noqa: E402
from course_lib.data.toy import SENTENCE, sentence_embeddings  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _np_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _np_entropy(w):
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def _bytes(explorer):
    value = bytes(explorer.image.value)  # ipywidgets keeps it as a memoryview
    assert value.startswith(PNG_MAGIC)
    return value


# ------------------------------------------------------------------------------------------
# Each explorer is a widget, drawn at once
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [softmax_explorer, attention_explorer, positional_explorer])
def test_each_explorer_returns_a_widget_with_a_figure_and_numbers(make):
    explorer = make()
    assert isinstance(explorer, widgets.VBox) and isinstance(explorer, explorers.Explorer)
    assert explorer.image in explorer.children and explorer.status in explorer.children
    assert explorer.image.format == "png"
    _bytes(explorer)
    assert explorer.error is None and explorer.result is not None
    assert explorer.lines and explorer.status.value.count("<br>") == len(explorer.lines) - 1
    for control in explorer.controls.values():  # every control is on screen
        assert any(control in box.children for box in explorer.children if isinstance(box, widgets.HBox))


def test_the_explorers_are_importable_from_viz():
    assert course_lib.viz.softmax_explorer is explorers.softmax_explorer
    assert course_lib.viz.attention_explorer is explorers.attention_explorer
    assert course_lib.viz.positional_explorer is explorers.positional_explorer
    from course_lib.viz import positional_explorer as imported

    assert imported is explorers.positional_explorer
    with pytest.raises(AttributeError):
        course_lib.viz.no_such_explorer  # noqa: B018


# ------------------------------------------------------------------------------------------
# Static fallback: without a widget frontend the initial state is still a figure
# ------------------------------------------------------------------------------------------


def test_without_a_kernel_the_explorer_draws_a_pyplot_figure_of_its_state():
    assert not explorers._in_kernel()  # pytest: a plain Python process, no Jupyter kernel
    before = set(plt.get_fignums())
    explorer = softmax_explorer([2.0, -1.0, 0.5], temperature=1.0)
    new = set(plt.get_fignums()) - before
    assert len(new) == 1
    figure = plt.figure(new.pop())
    assert explorer.static_figure is figure
    weights_axes = figure.axes[1]
    heights = [bar.get_height() for bar in weights_axes.patches]
    np.testing.assert_allclose(heights, _np_softmax(np.array([2.0, -1.0, 0.5])), rtol=1e-6)


def test_inside_a_kernel_no_pyplot_figure_is_made(monkeypatch):
    monkeypatch.setattr(widgets_module, "_in_kernel", lambda: True)
    before = set(plt.get_fignums())
    explorer = attention_explorer()
    assert set(plt.get_fignums()) == before  # the widget (or the bundle's PNG) shows it instead
    assert not hasattr(explorer, "static_figure")


@pytest.mark.parametrize("make", [softmax_explorer, attention_explorer, positional_explorer])
def test_display_bundle_has_the_widget_view_a_png_and_text(make):
    explorer = make()
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert base64.b64decode(bundle["image/png"]) == _bytes(explorer)  # the current state
    assert bundle["text/plain"].splitlines()[1].strip() == explorer.lines[0]


def test_the_bundle_follows_the_controls():
    explorer = softmax_explorer(temperature=1.0)
    first = explorer._repr_mimebundle_()["image/png"]
    explorer.controls["temperature"].value = 5.0
    second = explorer._repr_mimebundle_()
    assert second["image/png"] != first and "T = 5" in second["text/plain"]


# ------------------------------------------------------------------------------------------
# Softmax explorer
# ------------------------------------------------------------------------------------------


def test_softmax_explorer_default_is_the_query_it_of_the_running_sentence():
    tokens, x = sentence_embeddings()
    explorer = softmax_explorer(temperature=0.5)
    r = explorer.result
    it = tokens.index("it")
    logits = (x[it] @ x.T).double().numpy()  # independent: the raw scores of "it"
    np.testing.assert_allclose(r["logits"].numpy(), logits, rtol=1e-6)
    expected = _np_softmax(logits / 0.5)
    np.testing.assert_allclose(r["weights"].numpy(), expected, rtol=1e-9, atol=1e-12)
    assert r["labels"] == tokens
    # the numbers chapter 02 prints for T = 0.5: entropy 1.591 nats, max weight 0.550 on 'it'
    assert explorer.lines[0].startswith(f"entropy H = {_np_entropy(expected):.3f} nats")
    assert "1.591" in explorer.lines[0]
    assert f"ln 11 = {math.log(11):.3f}" in explorer.lines[0]
    assert explorer.lines[1].startswith(f"largest weight {expected.max():.3f} on 'it'")


@pytest.mark.parametrize("temperature, d_k", [(1.0, 1), (0.25, 1), (3.0, 1), (1.0, 64), (0.5, 7)])
def test_softmax_explorer_numbers_match_an_independent_computation(temperature, d_k):
    logits = np.array([2.0, -1.0, 0.5, 3.5, 0.0])
    explorer = softmax_explorer(logits.tolist(), labels=list("abcde"), temperature=temperature, d_k=d_k)
    r = explorer.result
    expected = _np_softmax(logits / (temperature * math.sqrt(d_k)))
    np.testing.assert_allclose(r["weights"].numpy(), expected, rtol=1e-9, atol=1e-12)
    assert r["entropy"] == pytest.approx(_np_entropy(expected), abs=1e-9)
    assert r["effective_temperature"] == pytest.approx(temperature * math.sqrt(d_k))
    assert f"entropy H = {_np_entropy(expected):.3f} nats" in explorer.status.value
    assert f"on '{'abcde'[int(expected.argmax())]}'" in explorer.lines[1]
    assert "the weights sum to 1.000" in explorer.lines[1]


def test_softmax_explorer_controls_change_the_figure_and_the_numbers():
    explorer = softmax_explorer([1.0, 2.0, 3.0])
    seen = {_bytes(explorer)}
    entropies = [explorer.result["entropy"]]
    for T in (0.3, 3.0, 30.0):  # hotter and hotter
        explorer.controls["temperature"].value = T
        seen.add(_bytes(explorer))
        entropies.append(explorer.result["entropy"])
    assert len(seen) == 4
    assert entropies[1] < entropies[0] < entropies[2] < entropies[3] < math.log(3)
    explorer.controls["d_k"].value = 64  # the scale is a temperature too
    assert explorer.result["scale"] == pytest.approx(1 / 8)
    np.testing.assert_allclose(explorer.result["weights"].numpy(),
                               _np_softmax(np.array([1.0, 2.0, 3.0]) / (30.0 * 8)), rtol=1e-9)
    explorer.controls["logits"].value = "0, 0, 5, 1"  # the text box: a new number of logits
    assert explorer.result["labels"] == ["0", "1", "2", "3"] and explorer.result["argmax"] == 2
    assert _bytes(explorer) not in seen


def test_softmax_explorer_bad_text_keeps_the_figure_and_says_why():
    explorer = softmax_explorer([1.0, 2.0])
    image, result = _bytes(explorer), explorer.result
    explorer.controls["logits"].value = "1, two"
    assert explorer.error is not None and "logits" in explorer.error and "logits" in explorer.status.value
    assert _bytes(explorer) == image and explorer.result is result
    explorer.controls["logits"].value = "1, 2, 4"  # recovers
    assert explorer.error is None and len(explorer.result["weights"]) == 3


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(logits=[[1.0, 2.0]]), ValueError, "logits"),
    (dict(logits=[]), ValueError, "logits"),
    (dict(logits="abc"), TypeError, "logits"),
    (dict(logits=[1.0, 2.0], labels=["a"]), ValueError, "labels"),
    (dict(logits=[1.0, 2.0], labels=[1, 2]), TypeError, "labels"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(d_k=0), ValueError, "d_k"),
    (dict(d_k=2.5), ValueError, "d_k"),
])
def test_softmax_explorer_bad_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        softmax_explorer(**kwargs)


# ------------------------------------------------------------------------------------------
# Attention explorer
# ------------------------------------------------------------------------------------------


def test_attention_explorer_default_is_chapter_04s_attention_on_the_hand_made_vectors():
    tokens, x = sentence_embeddings()
    explorer = attention_explorer(causal=True)
    r = explorer.result
    assert r["tokens"] == tokens and r["d_k"] == 7 and explorer.controls["query"].value == tokens.index("it")
    # independent: PyTorch's attention with its own causal flag, default scale 1/sqrt(7)
    expected = F.scaled_dot_product_attention(x, x, torch.eye(len(tokens)), is_causal=True)  # weights @ I
    torch.testing.assert_close(r["weights"][0], expected)
    row = expected[tokens.index("it")]
    assert f"'cat' {row[tokens.index('cat')].item():.3f}" in explorer.lines[0] and "'cat' 0.150" in explorer.lines[0]
    visible = row[: tokens.index("it") + 1].numpy()
    assert f"row entropy {_np_entropy(visible):.3f} nats" in explorer.lines[1]
    assert f"the {tokens.index('it') + 1} keys it may see" in explorer.lines[1]


def test_attention_explorer_reproduces_chapter_03s_lift_to_d_k_256():
    tokens, x = sentence_embeddings()
    explorer = attention_explorer(d_k=256, seed=4)
    g = torch.Generator().manual_seed(4)
    W = torch.randn(7, 256, generator=g) / math.sqrt(7)  # chapter 03, section 5
    q = x @ W
    expected = torch.softmax(q @ q.T / 16, dim=-1)
    torch.testing.assert_close(explorer.result["weights"][0], expected)
    it, cat = tokens.index("it"), tokens.index("cat")
    assert explorer.lines[0].startswith(f"query 'it' (row {it}): top keys 'it' {expected[it, it].item():.3f}, "
                                        f"'cat' {expected[it, cat].item():.3f}")
    assert f"standard deviation {(q @ q.T / 16).std().item():.2f}" in explorer.lines[2]
    explorer.controls["scale"].value = False  # unscaled: "it" attends to itself only (chapter 03)
    assert explorer.result["row"][it] > 0.99
    torch.testing.assert_close(explorer.result["weights"][0], torch.softmax(q @ q.T, dim=-1))
    assert "unscaled" in explorer.lines[2]


def test_attention_explorer_controls_change_the_figure():
    explorer = attention_explorer()
    seen = {_bytes(explorer)}
    for name, value in [("d_k", 64), ("scale", False), ("causal", True), ("pads", 2), ("mask_pads", False),
                        ("query", 1), ("sentence", "It was tired.")]:
        before = explorer.result
        explorer.controls[name].value = value
        assert explorer.error is None, (name, explorer.error)
        assert explorer.result is not before
        seen.add(_bytes(explorer))
    assert len(seen) == 8  # every change drew a different figure


def test_attention_explorer_padding_and_causal_masks():
    explorer = attention_explorer(sentence="It was tired.", pads=3, causal=False)
    w = explorer.result["weights"][0]  # (T, T) with T = 4 + 3
    assert explorer.result["tokens"][-3:] == ["<pad>"] * 3
    assert (w[:, 4:] == 0).all()  # padding mask on: no query looks at a pad
    torch.testing.assert_close(w.sum(-1), torch.ones(7))
    explorer.controls["mask_pads"].value = False  # the pads (zero vectors, score 0) take weight
    assert (explorer.result["weights"][0][:4, 4:] > 0).all()
    assert "masks: none" in explorer.lines[2]
    explorer.controls["causal"].value = True
    explorer.controls["mask_pads"].value = True
    w = explorer.result["weights"][0]
    allowed = torch.ones(7, 7, dtype=torch.bool).tril() & (torch.arange(7) < 4)[None, :]
    assert (w[~allowed] == 0).all() and (w[allowed] > 0).all()
    assert "masks: causal, padding (3 pads)" in explorer.lines[2]


def test_attention_explorer_query_row_follows_the_tokens():
    explorer = attention_explorer(query="cat")
    assert explorer.controls["query"].value == 1 and explorer.lines[0].startswith("query 'cat' (row 1)")
    explorer.controls["query"].value = 3
    explorer.controls["pads"].value = 2  # more tokens: the selected row stays
    assert explorer.controls["query"].value == 3 and len(explorer.controls["query"].options) == 13
    explorer.controls["sentence"].value = "The cat sat."  # fewer tokens: the row stays if it exists
    assert explorer.controls["query"].value == 3 and explorer.result["tokens"][3] == "."
    explorer.controls["pads"].value = 0
    explorer.controls["sentence"].value = "It was."  # row 3 is gone: the last token
    assert explorer.controls["query"].value == 2


def test_attention_explorer_unknown_word_keeps_the_figure_and_lists_the_known_words():
    explorer = attention_explorer()
    image, result = _bytes(explorer), explorer.result
    explorer.controls["sentence"].value = "The dog sat."
    assert "dog" in explorer.error and "known words" in explorer.error and "dog" in explorer.status.value
    assert _bytes(explorer) == image and explorer.result is result


def test_attention_explorer_heads_use_their_own_projections():
    tokens, x = sentence_embeddings()
    explorer = attention_explorer(d_k=16, num_heads=3, head=1, seed=10)
    assert isinstance(explorer.controls["head"], widgets.ToggleButtons)
    weights = explorer.result["weights"]
    assert weights.shape == (3, len(tokens), len(tokens))
    for h in range(3):
        W = torch.randn(7, 16, generator=torch.Generator().manual_seed(10 + h)) / math.sqrt(7)
        torch.testing.assert_close(weights[h], torch.softmax((x @ W) @ (x @ W).T / 4, dim=-1))
    assert ", head 1)" in explorer.lines[0]
    image = _bytes(explorer)
    explorer.controls["head"].value = 2
    assert _bytes(explorer) != image and explorer.result["head"] == 2
    assert "head" not in attention_explorer().controls  # one head: no selector


def test_attention_explorer_with_a_model_shows_the_models_own_heads():
    torch.manual_seed(0)
    model = MultiHeadAttention(embed_dim=8, num_heads=2).eval()
    g = torch.Generator().manual_seed(3)
    inputs = torch.randn(5, 8, generator=g)
    explorer = attention_explorer(model=model, inputs=inputs, tokens=list("abcde"), query="c")
    assert "sentence" not in explorer.controls and "d_k" not in explorer.controls
    _, expected = model(inputs[None], need_weights=True)  # (1, H, T, T): the module's own weights
    torch.testing.assert_close(explorer.result["weights"], expected[0])
    assert explorer.result["d_k"] == 4
    explorer.controls["causal"].value = True
    _, causal = model(inputs[None], is_causal=True, need_weights=True)
    torch.testing.assert_close(explorer.result["weights"], causal[0])
    explorer.controls["causal"].value = False
    explorer.controls["pads"].value = 2
    padded = torch.cat([inputs, torch.zeros(2, 8)])[None]  # zero vectors as pads
    keep = torch.tensor([[True] * 5 + [False] * 2])
    _, masked = model(padded, key_padding_mask=keep, need_weights=True)
    torch.testing.assert_close(explorer.result["weights"], masked[0])


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(sentence=3), TypeError, "sentence"),
    (dict(sentence="The dog barked."), ValueError, "dog"),
    (dict(d_k=0), ValueError, "d_k"),
    (dict(num_heads=0), ValueError, "num_heads"),
    (dict(pads=-1), ValueError, "pads"),
    (dict(num_heads=2, head=2), ValueError, "head"),
    (dict(query="dog"), ValueError, "query"),
    (dict(query=11), ValueError, "query"),
    (dict(model=torch.nn.Linear(2, 2), inputs=torch.ones(2, 2)), TypeError, "model"),
    (dict(model=MultiHeadAttention(8, 2), inputs=None), TypeError, "inputs"),
    (dict(model=MultiHeadAttention(8, 2), inputs=torch.ones(3, 4)), ValueError, "inputs"),
    (dict(model=MultiHeadAttention(8, 2), inputs=torch.ones(3, 8), tokens=["a"]), ValueError, "tokens"),
])
def test_attention_explorer_bad_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        attention_explorer(**kwargs)


# ------------------------------------------------------------------------------------------
# Positional explorer
# ------------------------------------------------------------------------------------------


def _np_table(P, D, base):
    pos = np.arange(P)[:, None]
    omega = base ** (-np.arange(0, D, 2) / D)
    table = np.empty((P, D))
    table[:, 0::2] = np.sin(pos * omega)
    table[:, 1::2] = np.cos(pos * omega)
    return table, omega


@pytest.mark.parametrize("D, base, P, p", [(64, 10000.0, 128, 0), (16, 100.0, 40, 17), (8, 10.0, 12, 11)])
def test_positional_explorer_numbers_match_the_formula(D, base, P, p):
    explorer = positional_explorer(embed_dim=D, base=base, num_positions=P, position=p)
    r = explorer.result
    table, omega = _np_table(P, D, base)
    np.testing.assert_allclose(r["pe"].numpy(), table, atol=1e-9)
    ks = np.arange(-p, P - p)
    np.testing.assert_array_equal(r["offsets"].numpy(), ks)
    np.testing.assert_allclose(r["dots"].numpy(), table[p + ks] @ table[p], atol=1e-9)
    np.testing.assert_allclose(r["dots"].numpy(), np.cos(ks[:, None] * omega).sum(-1), atol=1e-9)  # k only
    shown = [k for k in (0, 1, 2, 5, 10, 50) if p + k < P]
    assert explorer.lines[0].startswith(f"PE(p) · PE(p + k) at p = {p}: ")
    for k in shown:
        assert f"k = {k}: {np.cos(k * omega).sum():.2f}" in explorer.lines[0]
    assert f"to {2 * math.pi / omega[-1]:.1f} (pair {D // 2 - 1})" in explorer.lines[2]


def test_positional_explorer_shows_chapter_07s_numbers():
    lines = positional_explorer().lines  # D = 64, P = 128, base 10000, as chapter 07
    for text in ("k = 0: 32.00", "k = 1: 30.92", "k = 2: 28.30", "k = 5: 23.50", "k = 10: 21.05"):
        assert text in lines[0]
    assert "from 6.3 positions (pair 0) to 47117.2 (pair 31)" in lines[2]


def test_positional_explorer_controls_change_the_figure():
    explorer = positional_explorer(embed_dim=16, num_positions=64)
    seen = {_bytes(explorer)}
    for name, value in [("embed_dim", 32), ("base", 100.0), ("num_positions", 32), ("position", 20)]:
        explorer.controls[name].value = value
        assert explorer.error is None
        seen.add(_bytes(explorer))
    assert len(seen) == 5
    assert explorer.result["pe"].shape == (32, 32)
    explorer.controls["num_positions"].value = 10  # p = 20 no longer fits: clamped to P - 1
    assert explorer.controls["position"].value == 9 and explorer.result["position"] == 9


@pytest.mark.parametrize("kwargs, word", [
    (dict(embed_dim=7), "embed_dim"), (dict(embed_dim=0), "embed_dim"), (dict(base=1.0), "base"),
    (dict(base="big"), "base"), (dict(num_positions=1), "num_positions"),
    (dict(num_positions=16, position=16), "position"), (dict(position=-1), "position"),
])
def test_positional_explorer_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        positional_explorer(**kwargs)


def test_running_sentence_is_the_default_sentence():
    assert attention_explorer().controls["sentence"].value == SENTENCE
