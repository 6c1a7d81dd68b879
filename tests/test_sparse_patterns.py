"""Sparse attention patterns (Child et al. 2019; Longformer / BigBird) have the structure their docstrings state."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import scaled_dot_product_attention
from course_lib.efficient import fixed_mask, global_local_mask, sliding_window_mask, strided_mask

SETTINGS = settings(max_examples=60, deadline=None)


def brute_force(L, S, rule):
    """The mask written entry by entry from the paper's set definitions (no tensor tricks)."""
    return torch.tensor([[bool(rule(i, j)) for j in range(S)] for i in range(L)], dtype=torch.bool).reshape(L, S)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 12), st.booleans())
def test_strided_matches_the_set_definition_and_row_counts(L, stride, causal):
    mask = strided_mask(L, stride, causal=causal)
    # Child et al. sec. 4.3: A1 = {t, ..., i} with t = max(0, i - l); A2 = {j : (i - j) mod l = 0}.
    if causal:
        expected = brute_force(L, L, lambda i, j: j <= i and (i - stride <= j or (i - j) % stride == 0))
        counts = torch.tensor([min(i + 1, stride) + i // stride for i in range(L)])
        assert torch.equal(mask.sum(-1), counts)
        assert torch.equal(mask, mask.tril())  # causal => lower triangular
    else:
        expected = brute_force(L, L, lambda i, j: abs(i - j) <= stride or (i - j) % stride == 0)
        assert torch.equal(mask, mask.T)  # two-sided: symmetric
    assert torch.equal(mask, expected)
    assert mask.diagonal().all() and mask.dtype == torch.bool and mask.shape == (L, L)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 10), st.integers(1, 10), st.booleans())
def test_fixed_matches_the_set_definition_and_row_counts(L, block, summary, causal):
    summary = min(summary, block)
    mask = fixed_mask(L, block, summary=summary, causal=causal)
    # Child et al. sec. 4.3: A1 = {j : floor(j/l) = floor(i/l)}, A2 = {j : j mod l in {l - c, ..., l - 1}}.
    rule = lambda i, j: i // block == j // block or j % block >= block - summary  # noqa: E731
    if causal:
        expected = brute_force(L, L, lambda i, j: j <= i and rule(i, j))
        counts = torch.tensor([i % block + 1 + (i // block) * summary for i in range(L)])
        assert torch.equal(mask.sum(-1), counts)
        assert torch.equal(mask, mask.tril())
    else:
        expected = brute_force(L, L, rule)
        # every query sees the summary columns in full
        summary_cols = torch.tensor([j % block >= block - summary for j in range(L)])
        assert mask[:, summary_cols].all()
    assert torch.equal(mask, expected) and mask.diagonal().all()


@SETTINGS
@given(st.integers(2, 40), st.integers(1, 9), st.data())
def test_global_local_global_rows_and_columns_are_full_and_the_rest_is_the_window(L, window, data):
    g = data.draw(st.lists(st.integers(0, L - 1), min_size=0, max_size=3, unique=True))
    mask = global_local_mask(L, window, global_tokens=g)
    local = sliding_window_mask(L, window, causal=False)
    is_global = torch.zeros(L, dtype=torch.bool)
    is_global[g] = True
    assert mask[is_global].all() and mask[:, is_global].all()  # global tokens attend and are attended everywhere
    assert torch.equal(mask, mask.T)  # symmetric (the window is two-sided)
    rows = ~is_global
    expected_counts = (local | is_global[None, :])[rows].sum(-1)  # its window plus the globals outside it
    assert torch.equal(mask[rows].sum(-1), expected_counts)
    assert torch.equal(mask[rows][:, ~is_global], local[rows][:, ~is_global])  # nothing else is added


def test_global_local_int_means_the_first_tokens_and_causal_is_lower_triangular():
    assert torch.equal(global_local_mask(10, 3, 2), global_local_mask(10, 3, [0, 1]))
    mask = global_local_mask(12, 3, [0, 5], causal=True)
    assert torch.equal(mask, mask.tril())
    assert mask[:, 0].all() and mask[5:, 5].all() and not mask[:5, 5].any()  # global column, from its own position on
    assert mask[5, :6].all()  # a global query sees all earlier keys
    assert torch.equal(global_local_mask(9, 3, 0), sliding_window_mask(9, 3, causal=False))


@pytest.mark.parametrize("make", [
    lambda L, S: strided_mask(L, 3, S=S), lambda L, S: fixed_mask(L, 4, S=S),
    lambda L, S: global_local_mask(L, 3, 1, S=S),
])
def test_rectangular_masks(make):
    mask = make(5, 9)
    assert mask.shape == (5, 9) and mask.dtype == torch.bool
    assert mask.diagonal().all()  # query i sees key i (top-left aligned)


@pytest.mark.parametrize("make", [
    lambda d: strided_mask(6, 2, device=d), lambda d: fixed_mask(6, 3, device=d),
    lambda d: global_local_mask(6, 3, [0], device=d),
])
def test_device_argument(make, device):
    mask = make(device)
    assert mask.device.type == device.type and mask.shape == (6, 6)


def test_masks_work_in_attention_and_block_what_they_say():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 12, 4), torch.randn(1, 12, 4), torch.randn(1, 12, 3)
    for mask in (strided_mask(12, 3), fixed_mask(12, 4), global_local_mask(12, 3, [0], causal=True)):
        _, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
        assert (w[0][~mask] == 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(1, 12))


@pytest.mark.parametrize("call, error, words", [
    (lambda: strided_mask(0, 2), ValueError, ["L"]),
    (lambda: strided_mask(4, 0), ValueError, ["stride"]),
    (lambda: strided_mask(4, 2, causal="yes"), TypeError, ["causal"]),
    (lambda: fixed_mask(4, 2, summary=3), ValueError, ["summary", "block"]),
    (lambda: fixed_mask(4, 2.0), TypeError, ["block"]),
    (lambda: global_local_mask(4, 2, [7]), ValueError, ["global", "7"]),
    (lambda: global_local_mask(4, 2, -1), ValueError, ["global_tokens"]),
    (lambda: global_local_mask(4, 2, "0"), TypeError, ["global_tokens"]),
    (lambda: global_local_mask(4, 2, True), TypeError, ["global_tokens"]),
    (lambda: global_local_mask(4, 0, 1), ValueError, ["window"]),
])
def test_bad_input_errors_name_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
