"""course_lib.attention against PyTorch's own implementation, on random shapes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import causal_mask, dot_product_scores, padding_mask, scaled_dot_product_attention, softmax

SETTINGS = settings(max_examples=60, deadline=None)
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


@st.composite
def attention_inputs(draw, dtypes=(torch.float32, torch.float64)):
    """Random (query, key, value, kwargs) with leading batch dims, L != S allowed, any mask kind."""
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    L, S = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    E, Ev = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, L, E, generator=g, dtype=dtype)
    k = torch.randn(*batch, S, E, generator=g, dtype=dtype)
    v = torch.randn(*batch, S, Ev, generator=g, dtype=dtype)
    kind = draw(st.sampled_from(["none", "bool", "float", "causal", "bool-broadcast"]))
    kwargs = {}
    if kind == "bool":
        kwargs["attn_mask"] = torch.rand(*batch, L, S, generator=g) > 0.3
    elif kind == "bool-broadcast":
        kwargs["attn_mask"] = torch.rand(L, S, generator=g) > 0.3  # (L, S) broadcast over the batch
    elif kind == "float":
        kwargs["attn_mask"] = torch.randn(*batch, L, S, generator=g, dtype=dtype)
    elif kind == "causal":
        kwargs["is_causal"] = True
    if draw(st.booleans()):
        kwargs["scale"] = draw(st.floats(0.05, 3.0))
    return q, k, v, kwargs


@SETTINGS
@given(attention_inputs())
def test_matches_torch_sdpa(inputs):
    q, k, v, kwargs = inputs
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(ours, ref, **TOL[q.dtype])
    assert ours.dtype == q.dtype and ours.shape == q.shape[:-1] + v.shape[-1:]


@SETTINGS
@given(attention_inputs())
def test_weights_are_a_distribution_or_zero(inputs):
    q, k, v, kwargs = inputs
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True, **kwargs)
    assert not torch.isnan(w).any() and not torch.isnan(out).any()
    assert (w >= 0).all()
    sums = w.sum(-1)
    fully_masked = torch.isclose(sums, torch.zeros_like(sums))
    torch.testing.assert_close(sums[~fully_masked], torch.ones_like(sums[~fully_masked]))
    # and the output is exactly the weighted sum of the values
    torch.testing.assert_close(out, w @ v, **TOL[q.dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float32_reference(dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(5, 5, generator=g) > 0.3
    ours = scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), attn_mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.float(), ref, rtol=0.05, atol=0.03)


def test_fully_masked_rows_give_zeros_not_nan():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 4, 3, generator=g), torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 6, generator=g)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of batch 0 may attend to nothing
    for m in (mask, torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))):
        out, w = scaled_dot_product_attention(q, k, v, attn_mask=m, return_weights=True)
        assert torch.equal(out[0, 1], torch.zeros(6)) and torch.equal(w[0, 1], torch.zeros(5))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=m))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_causal_future_perturbation_leaves_past_unchanged(L, E, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, L, E, generator=g, dtype=torch.float64) for _ in range(3))
    t = int(torch.randint(0, L - 1, (1,), generator=g))  # perturb tokens t+1.. of keys and values
    k2, v2 = k.clone(), v.clone()
    k2[:, t + 1:] += 10 * torch.randn_like(k2[:, t + 1:])
    v2[:, t + 1:] += 10 * torch.randn_like(v2[:, t + 1:])
    for kwargs in ({"is_causal": True}, {"attn_mask": causal_mask(L)}):
        before = scaled_dot_product_attention(q, k, v, **kwargs)
        after = scaled_dot_product_attention(q, k2, v2, **kwargs)
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])  # the perturbation was real


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_padding_perturbation_leaves_outputs_unchanged(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    B, S = len(lengths), max(lengths) + 2
    q = torch.randn(B, 3, 4, generator=g, dtype=torch.float64)
    k = torch.randn(B, S, 4, generator=g, dtype=torch.float64)
    v = torch.randn(B, S, 5, generator=g, dtype=torch.float64)
    pad = padding_mask(lengths, S)  # (B, S), True for real tokens
    noise_k = torch.randn(k.shape, generator=g, dtype=torch.float64) * 100
    noise_v = torch.randn(v.shape, generator=g, dtype=torch.float64) * 100
    k2 = torch.where(pad[..., None], k, noise_k)
    v2 = torch.where(pad[..., None], v, noise_v)
    mask = pad[:, None, :]  # (B, 1, S) broadcasts over the queries
    before = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    after = scaled_dot_product_attention(q, k2, v2, attn_mask=mask)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-12)
    unmasked = scaled_dot_product_attention(q, k2, v2)
    assert not torch.allclose(unmasked, before)  # without the mask the pads would leak in


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"scale": 0.3}, {"mask": "bool"}, {"mask": "float"}])
def test_gradcheck_float64(kwargs):
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    kwargs = dict(kwargs)
    kind = kwargs.pop("mask", None)
    if kind == "bool":
        m = torch.rand(3, 5, generator=g) > 0.3
        m[:, 0] = True
        kwargs["attn_mask"] = m
    elif kind == "float":
        kwargs["attn_mask"] = torch.randn(3, 5, generator=g, dtype=torch.float64)
    if "is_causal" in kwargs:
        k = k[:, :3].detach().requires_grad_()
        v = v[:, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, **kwargs), (q, k, v))


def test_gradients_match_torch():
    g = torch.Generator().manual_seed(3)
    tensors = [torch.randn(2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    ours = scaled_dot_product_attention(*tensors, is_causal=True)
    grads = torch.autograd.grad(ours.square().sum(), tensors)
    ref = F.scaled_dot_product_attention(*tensors, is_causal=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), tensors)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_dropout_zeroes_weights_and_keeps_the_expectation():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 4), torch.randn(1, 3, 4), torch.ones(1, 3, 1)
    out = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=0.5) for _ in range(4000)])
    assert (out == 0).any()  # sometimes every kept weight is dropped
    assert abs(out.mean().item() - 1.0) < 0.05  # weights sum to 1 in expectation


# ----- dot_product_scores and softmax -------------------------------------------------------


@SETTINGS
@given(attention_inputs())
def test_dot_product_scores_is_a_batch_of_dot_products(inputs):
    q, k, _, kwargs = inputs
    scale = kwargs.get("scale")
    scores = dot_product_scores(q, k, scale=scale)
    expected = (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1) * (1.0 if scale is None else scale)  # (..., L, S)
    torch.testing.assert_close(scores, expected, **TOL[q.dtype])


@SETTINGS
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(0, 2**31 - 1),
       st.sampled_from([torch.float32, torch.float64]), st.floats(0.1, 500.0))
def test_softmax_matches_torch_on_every_dim(shape, seed, dtype, spread):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * spread
    for dim in range(-len(shape), len(shape)):
        torch.testing.assert_close(softmax(x, dim=dim), torch.softmax(x, dim=dim))


def test_softmax_is_stable_where_the_naive_formula_overflows():
    x = torch.tensor([1000.0, 1001.0, 1002.0])
    naive = torch.exp(x) / torch.exp(x).sum()
    assert torch.isnan(naive).any()
    torch.testing.assert_close(softmax(x), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x), softmax(x - 1000.0))  # shift invariance


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_softmax_keeps_dtype_and_handles_all_masked_rows(dtype):
    x = torch.tensor([[1.0, 2.0, float("-inf")], [float("-inf")] * 3], dtype=dtype)
    y = softmax(x)
    assert y.dtype == dtype
    assert torch.equal(y[1], torch.zeros(3, dtype=dtype))
    assert y[0, 2] == 0 and abs(y[0].float().sum().item() - 1) < 1e-2


# ----- bad input ----------------------------------------------------------------------------


def _qkv():
    return torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda q, k, v: scaled_dot_product_attention(q, torch.randn(2, 5, 3), v), ValueError, ["query", "key", "E", "(2, 5, 3)"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, torch.randn(2, 4, 6)), ValueError, ["value", "S", "(2, 4, 6)"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.bool)), ValueError, ["attn_mask", "(4, 5)", "(2, 3, 5)"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.long)), TypeError, ["attn_mask", "int64"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.float64)), TypeError, ["attn_mask", "float64"]),
        (lambda q, k, v: scaled_dot_product_attention(q.tolist(), k, v), TypeError, ["query", "list"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k.double(), v), TypeError, ["dtype"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.bool), is_causal=True), ValueError, ["attn_mask", "is_causal"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=1.5), ValueError, ["dropout_p"]),
        (lambda q, k, v: scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 6)), ValueError, ["batch dims", "(2, 3, 4)", "(3, 5, 4)"]),
        (lambda q, k, v: scaled_dot_product_attention(torch.randn(4), k, v), ValueError, ["query", "at least 2 dims"]),
        (lambda q, k, v: scaled_dot_product_attention(q.long(), k, v), TypeError, ["query", "floating"]),
        (lambda q, k, v: dot_product_scores(q, torch.randn(5, 3)), ValueError, ["query", "key", "(5, 3)"]),
        (lambda q, k, v: softmax([1.0, 2.0]), TypeError, ["x", "list"]),
        (lambda q, k, v: softmax(q, dim=3), ValueError, ["dim=3", "(2, 3, 4)"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, scale="x"), TypeError, ["scale", "str"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, scale=True), TypeError, ["scale", "bool"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, scale=float("nan")), ValueError, ["scale", "finite"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal="yes"), TypeError, ["is_causal", "bool", "str"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=torch.tensor(True)), TypeError, ["is_causal", "Tensor"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, return_weights=1), TypeError, ["return_weights", "int"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p="0.1"), TypeError, ["dropout_p", "str"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=True), TypeError, ["dropout_p", "bool"]),
        (lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=-0.1), ValueError, ["dropout_p", "[0, 1)"]),
        (lambda q, k, v: dot_product_scores(q, k, scale=True), TypeError, ["scale", "bool"]),
        (lambda q, k, v: dot_product_scores(q, k, scale="2"), TypeError, ["scale", "str"]),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call(*_qkv())
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


def test_scale_accepts_any_real_number():
    q, k, v = _qkv()
    expected = scaled_dot_product_attention(q, k, v, scale=2.0)
    for scale in (2, np.float64(2.0), np.float32(2.0)):  # an int, NumPy floats: any real number
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=scale), expected)


def test_default_scale_is_one_over_sqrt_e():
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(3, 16, generator=g), torch.randn(5, 16, generator=g), torch.randn(5, 2, generator=g)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(16)))
    assert not torch.allclose(scaled_dot_product_attention(q, k, v), scaled_dot_product_attention(q, k, v, scale=1.0))


@given(st.integers(1, 4), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_attention_entropy_lies_between_one_hot_and_uniform(rows, S, seed):
    from course_lib.attention import attention_entropy

    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(rows, S, generator=g, dtype=torch.float64) * 3, dim=-1)  # (rows, S)
    h = attention_entropy(w)
    assert h.shape == (rows,) and h.dtype == torch.float64
    assert (h >= -1e-12).all() and (h <= math.log(S) + 1e-12).all()
    torch.testing.assert_close(attention_entropy(torch.full((S,), 1.0 / S, dtype=torch.float64)),
                               torch.tensor(math.log(S), dtype=torch.float64))  # uniform: ln S
    assert attention_entropy(torch.eye(S, dtype=torch.float64)).abs().max() == 0  # one-hot: 0, with 0 ln 0 = 0
    manual = -(w * w.log()).sum(-1)
    torch.testing.assert_close(h, manual)
