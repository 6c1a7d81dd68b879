"""course_lib.masking: the boolean convention (True = may attend), checked against PyTorch."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import causal_mask, combine_masks, padding_mask, scaled_dot_product_attention, to_additive


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9))
def test_causal_mask_is_what_torch_is_causal_uses(L, S):
    g = torch.Generator().manual_seed(L * 31 + S)
    q, k, v = torch.randn(L, 4, generator=g), torch.randn(S, 4, generator=g), torch.randn(S, 3, generator=g)
    mask = causal_mask(L, S)
    assert mask.shape == (L, S) and mask.dtype == torch.bool
    for i in range(L):
        for j in range(S):
            assert bool(mask[i, j]) == (j <= i)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask), F.scaled_dot_product_attention(q, k, v, is_causal=True)
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=5), st.integers(0, 3))
def test_padding_mask_marks_real_tokens(lengths, extra):
    S = max(max(lengths), 1) + extra
    mask = padding_mask(lengths, S)
    assert mask.shape == (len(lengths), S) and mask.dtype == torch.bool
    assert mask.sum(-1).tolist() == lengths
    for b, n in enumerate(lengths):
        assert mask[b, :n].all() and not mask[b, n:].any()
    assert torch.equal(padding_mask(torch.tensor(lengths), S), mask)


def test_padding_mask_default_length_is_the_longest():
    assert padding_mask([2, 4, 1]).shape == (3, 4)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_combine_masks_is_logical_and_with_broadcasting(L, lengths):
    S = max(lengths)
    pad = padding_mask(lengths, S)[:, None, :]  # (B, 1, S)
    causal = causal_mask(L, S)  # (L, S)
    both = combine_masks(causal, pad, None)
    assert both.shape == (len(lengths), L, S)
    expected = torch.tensor(
        [[[bool(causal[i, j]) and bool(pad[b, 0, j]) for j in range(S)] for i in range(L)] for b in range(len(lengths))]
    )
    assert torch.equal(both, expected)


def test_to_additive_gives_the_same_attention_as_the_boolean_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 2, generator=g)
    mask = torch.rand(2, 3, 5, generator=g) > 0.4
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        add = to_additive(mask, dtype)
        assert add.dtype == dtype and add.shape == mask.shape
        assert (add[mask] == 0).all() and torch.isneginf(add[~mask]).all()
    ours = scaled_dot_product_attention(q, k, v, attn_mask=to_additive(mask, torch.float32))
    torch.testing.assert_close(ours, scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_finite_fill_is_not_representable_in_float16():
    """Why to_additive uses -inf: -1e9 does not fit in float16."""
    scores = torch.zeros(2, 3, dtype=torch.float16)
    with pytest.raises(RuntimeError):
        scores.masked_fill(torch.ones(2, 3, dtype=torch.bool), -1e9)
    assert torch.isneginf(to_additive(torch.zeros(2, 3, dtype=torch.bool), torch.float16)).all()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: causal_mask(0), ValueError, ["L", "0"]),
        (lambda: causal_mask(3.0), TypeError, ["L", "float"]),
        (lambda: causal_mask(3, -1), ValueError, ["S"]),
        (lambda: padding_mask([2, -1]), ValueError, ["lengths", ">= 0"]),
        (lambda: padding_mask([2.0, 1.0]), TypeError, ["lengths"]),
        (lambda: padding_mask(torch.tensor([1.5])), TypeError, ["lengths", "float"]),
        (lambda: padding_mask([3, 4], S=2), ValueError, ["S=2", "4"]),
        (lambda: padding_mask([]), ValueError, ["lengths"]),
        (lambda: combine_masks(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool)), TypeError, ["masks[0]", "float32"]),
        (lambda: combine_masks(torch.ones(2, 3, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool)), ValueError, ["(2, 3)", "(4, 3)"]),
        (lambda: combine_masks(), TypeError, ["at least one"]),
        (lambda: to_additive(torch.ones(2, 2), torch.float32), TypeError, ["mask", "bool"]),
        (lambda: to_additive(torch.ones(2, 2, dtype=torch.bool), torch.int64), TypeError, ["dtype"]),
        (lambda: causal_mask(3, device=2.5), TypeError, ["device", "float"]),
        (lambda: causal_mask(3, device="nowhere"), ValueError, ["device", "nowhere"]),
        (lambda: padding_mask([2, 3], validate="yes"), TypeError, ["validate", "bool"]),
        (lambda: padding_mask(torch.tensor([2, -1]), validate=True), ValueError, ["lengths", ">= 0"]),
        (lambda: padding_mask(torch.tensor([3, 4]), S=2, validate=True), ValueError, ["S=2", "4"]),
        (lambda: combine_masks(causal_mask(3), causal_mask(3, device="meta")), ValueError, ["masks[1] on meta", "same device"]),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
