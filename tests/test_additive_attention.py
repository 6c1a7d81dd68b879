"""course_lib.attention.AdditiveAttention (Bahdanau et al. 2015) against an einsum reference and a loop."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.attention import AdditiveAttention
from course_lib.masking import causal_mask, padding_mask

SETTINGS = settings(max_examples=40, deadline=None)


def einsum_reference(module, query, key, value, attn_mask=None):
    """Independent form: einsum for every product, torch.softmax, NaN rows (all masked) set to 0."""
    Wq, Wk, w = module.W_query.weight, module.W_key.weight, module.w_v.weight[0]  # (h, Eq), (h, Ek), (h,)
    q = torch.einsum("...le,he->...lh", query, Wq)  # (..., L, h)
    k = torch.einsum("...se,he->...sh", key, Wk)  # (..., S, h)
    hidden = torch.tanh(q[..., :, None, :] + k[..., None, :, :])  # (..., L, S, h)
    scores = torch.einsum("...lsh,h->...ls", hidden, w)  # (..., L, S)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask.expand_as(scores), -math.inf)
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # an all -inf row: NaN -> 0
    return torch.einsum("...ls,...sv->...lv", weights, value), weights


def loop_reference(module, query, key, value):
    """The paper's formula one pair at a time: e_ij = v^T tanh(W q_i + U k_j), for 2-D inputs."""
    Wq, Wk, w = module.W_query.weight, module.W_key.weight, module.w_v.weight[0]
    L, S = query.shape[0], key.shape[0]
    out, all_weights = [], []
    for i in range(L):
        e = torch.stack([w @ torch.tanh(Wq @ query[i] + Wk @ key[j]) for j in range(S)])  # (S,)
        a = torch.exp(e - e.max()) / torch.exp(e - e.max()).sum()  # (S,)
        out.append(sum(a[j] * value[j] for j in range(S)))
        all_weights.append(a)
    return torch.stack(out), torch.stack(all_weights)


@st.composite
def inputs(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    L, S = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    Eq, Ek, Ev, h = (draw(st.integers(1, 7)) for _ in range(4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    module = AdditiveAttention(Eq, Ek, h).double()
    q = torch.randn(*batch, L, Eq, generator=g, dtype=torch.float64)
    k = torch.randn(*batch, S, Ek, generator=g, dtype=torch.float64)
    v = torch.randn(*batch, S, Ev, generator=g, dtype=torch.float64)
    kind = draw(st.sampled_from(["none", "bool", "bool-broadcast", "float"]))
    mask = None
    if kind == "bool":
        mask = torch.rand(*batch, L, S, generator=g) > 0.4
    elif kind == "bool-broadcast":
        mask = torch.rand(L, S, generator=g) > 0.4
    elif kind == "float":
        mask = torch.randn(*batch, L, S, generator=g, dtype=torch.float64)
    return module, q, k, v, mask


@SETTINGS
@given(inputs())
def test_matches_the_einsum_reference(case):
    module, q, k, v, mask = case
    out, w = module(q, k, v, attn_mask=mask)
    ref_out, ref_w = einsum_reference(module, q, k, v, mask)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w, ref_w, rtol=1e-10, atol=1e-12)
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if mask is not None:
        batch = torch.broadcast_shapes(batch, mask.shape[:-2])
    assert out.shape == batch + (q.shape[-2], v.shape[-1]) and w.shape == batch + (q.shape[-2], k.shape[-2])
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_loop_over_query_key_pairs(seed):
    torch.manual_seed(seed)
    module = AdditiveAttention(3, 5, 4).double()
    q, k, v = torch.randn(4, 3).double(), torch.randn(6, 5).double(), torch.randn(6, 2).double()
    out, w = module(q, k, v)
    ref_out, ref_w = loop_reference(module, q, k, v)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def test_scores_are_not_symmetric_and_differ_from_dot_products():
    """Additive scores are a learned network, not q . k: a zero query still gives non-constant scores."""
    torch.manual_seed(0)
    module = AdditiveAttention(4, 4, 8)
    key = torch.randn(5, 4)
    scores = module.scores(torch.zeros(1, 4), key)  # (1, 5): w^T tanh(W_k k_j), depends on the key alone
    assert scores.std() > 1e-3  # a dot product with a zero query would be all zeros


def test_causal_and_padding_masks_block_keys_and_fully_masked_rows_are_zero():
    torch.manual_seed(1)
    module = AdditiveAttention(4, 4, 6)
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    mask = causal_mask(5) & padding_mask([5, 3])[:, None, :]  # (B, L, S)
    out, w = module(q, k, v, attn_mask=mask)
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    # Causality: changing future keys and values leaves earlier outputs unchanged.
    k2, v2 = k.clone(), v.clone()
    k2[:, 3:], v2[:, 3:] = torch.randn(2, 2, 4), torch.randn(2, 2, 3)
    out2, _ = module(q, k2, v2, attn_mask=causal_mask(5))
    out1, _ = module(q, k, v, attn_mask=causal_mask(5))
    torch.testing.assert_close(out1[:, :3], out2[:, :3])
    assert not torch.allclose(out1[:, 3:], out2[:, 3:])
    # A row that may attend to nothing: zeros, not NaN.
    blocked = torch.ones(5, 5, dtype=torch.bool)
    blocked[2] = False
    out, w = module(q, k, v, attn_mask=blocked)
    assert (w[:, 2] == 0).all() and (out[:, 2] == 0).all() and not torch.isnan(out).any()
    # The float mask 0 / -inf gives the same numbers as the bool mask.
    additive = torch.zeros(5, 5).masked_fill(~causal_mask(5), float("-inf"))
    torch.testing.assert_close(module(q, k, v, attn_mask=additive)[0], out1)


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(2)
    module = AdditiveAttention(3, 3, 5)
    out, _ = module(torch.randn(2, 4, 3), torch.randn(2, 6, 3), torch.randn(2, 6, 2))
    out.square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_shapes_propagate(device):
    module = AdditiveAttention(3, 5, 7).to(device)
    q = torch.randn(2, 1, 4, 3, device=device)
    k, v = torch.randn(1, 3, 6, 5, device=device), torch.randn(1, 3, 6, 2, device=device)
    mask = torch.ones(4, 6, dtype=torch.bool, device=device)
    out, w = module(q, k, v, attn_mask=mask)
    assert out.shape == (2, 3, 4, 2) and w.shape == (2, 3, 4, 6)
    assert out.device.type == device.type and out.dtype == torch.float32


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m: m(torch.randn(4, 2), torch.randn(6, 5), torch.randn(6, 2)), ValueError, ["query", "(4, 2)", "3"]),
        (lambda m: m(torch.randn(4, 3), torch.randn(6, 4), torch.randn(6, 2)), ValueError, ["key", "(6, 4)", "5"]),
        (lambda m: m(torch.randn(4, 3), torch.randn(6, 5), torch.randn(7, 2)), ValueError, ["value", "share S"]),
        (lambda m: m(torch.randn(3), torch.randn(6, 5), torch.randn(6, 2)), ValueError, ["query", "2 dims"]),
        (lambda m: m([[1.0]], torch.randn(6, 5), torch.randn(6, 2)), TypeError, ["query", "list"]),
        (lambda m: m(torch.ones(4, 3, dtype=torch.long), torch.randn(6, 5), torch.randn(6, 2)), TypeError, ["query"]),
        (lambda m: m(torch.randn(4, 3).double(), torch.randn(6, 5).double(), torch.randn(6, 2).double()), TypeError,
         ["query", "float64", "float32"]),
        (lambda m: m(torch.randn(2, 4, 3), torch.randn(3, 6, 5), torch.randn(3, 6, 2)), ValueError, ["batch dims"]),
        (lambda m: m(torch.randn(4, 3), torch.randn(6, 5), torch.randn(6, 2), attn_mask=torch.ones(4, 5, dtype=torch.bool)),
         ValueError, ["attn_mask", "(4, 5)", "(4, 6)"]),
        (lambda m: m(torch.randn(4, 3), torch.randn(6, 5), torch.randn(6, 2), attn_mask=torch.ones(4, 6, dtype=torch.long)),
         TypeError, ["attn_mask"]),
        (lambda m: AdditiveAttention(0, 5, 7), ValueError, ["query_dim"]),
        (lambda m: AdditiveAttention(3, 5.0, 7), TypeError, ["key_dim"]),
        (lambda m: AdditiveAttention(3, 5, True), TypeError, ["hidden_dim"]),
    ],
)
def test_bad_input_errors_name_the_argument(call, error, words):
    module = AdditiveAttention(3, 5, 7)
    with pytest.raises(error) as info:
        call(module)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
