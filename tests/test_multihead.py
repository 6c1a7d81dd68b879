"""course_lib.multihead against torch.nn.MultiheadAttention(batch_first=True) and the paper's formula."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib.masking import causal_mask, padding_mask
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads

SETTINGS = settings(max_examples=40, deadline=None)
TOL = dict(atol=1e-6, rtol=1e-5)  # float32


def assert_close_scaled(actual, expected):
    """1e-6 in float32, relative to the output's scale: sums of large terms cancel to small outputs,
    and two correct float32 implementations that add in a different order then differ by a few 1e-6."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=1e-6 * scale, rtol=1e-5)


def make_pair(D, H, *, bias=True, kdim=None, vdim=None, seed=0, dtype=torch.float32):
    """A torch module with random weights (biases too, not torch's zeros) and its course_lib copy."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True, dtype=dtype)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ref.eval()
    ours = MultiHeadAttention.from_torch(ref)
    return ref, ours


def randn(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=dtype)


def torch_attn_mask(mask, H):
    """course_lib bool mask (L, S) / (B, L, S) / (B, H, L, S) -> torch's (True = blocked) (L, S) or (B*H, L, S)."""
    blocked = ~mask
    if mask.dim() == 3:
        blocked = blocked.repeat_interleave(H, dim=0)  # (B, L, S) -> (B*H, L, S), batch-major
    elif mask.dim() == 4:
        blocked = blocked.flatten(0, 1)  # (B, H, L, S) -> (B*H, L, S)
    return blocked


def some_allowed(g, *shape):
    """Random bool mask (..., L, S), True = may attend, with key 0 allowed in every row (no empty row)."""
    m = torch.rand(*shape, generator=g) > 0.4
    m[..., 0] = True
    return m


# ------------------------------------------------------------------------------------------------
# split_heads / merge_heads
# ------------------------------------------------------------------------------------------------


@SETTINGS
@given(B=st.integers(1, 3), T=st.integers(1, 6), H=st.integers(1, 4), Dh=st.integers(1, 5), seed=st.integers(0, 999))
def test_split_heads_matches_definition_and_round_trips(B, T, H, Dh, seed):
    x = randn(torch.Generator().manual_seed(seed), B, T, H * Dh)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, T, Dh)
    for h in range(H):  # head h gets features h*Dh .. (h+1)*Dh - 1 of every token
        assert torch.equal(heads[:, h], x[:, :, h * Dh:(h + 1) * Dh])
    assert torch.equal(merge_heads(heads), x)
    assert torch.equal(split_heads(merge_heads(heads), H), heads)


def test_split_heads_is_not_a_plain_reshape():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    assert not torch.equal(split_heads(x, 2), x.view(2, 2, 3, 2))


def test_split_merge_keep_dtype_and_device():
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = torch.ones(2, 3, 4, dtype=dtype)
        assert split_heads(x, 2).dtype == dtype and merge_heads(split_heads(x, 2)).dtype == dtype


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: split_heads(torch.zeros(2, 3, 6), 4), ValueError, ["D=6", "num_heads=4"]),
        (lambda: split_heads(torch.zeros(3, 6), 2), ValueError, ["x", "(3, 6)"]),
        (lambda: split_heads(torch.zeros(1, 2, 3, 6), 2), ValueError, ["x", "(1, 2, 3, 6)"]),
        (lambda: split_heads(torch.zeros(2, 3, 6), 0), ValueError, ["num_heads"]),
        (lambda: split_heads(torch.zeros(2, 3, 6), 2.0), TypeError, ["num_heads"]),
        (lambda: split_heads([[1.0]], 1), TypeError, ["x"]),
        (lambda: merge_heads(torch.zeros(2, 3, 6)), ValueError, ["x", "(2, 3, 6)"]),
        (lambda: merge_heads("x"), TypeError, ["x"]),
    ],
)
def test_split_merge_bad_inputs(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value)


# ------------------------------------------------------------------------------------------------
# Equality with torch.nn.MultiheadAttention
# ------------------------------------------------------------------------------------------------


@st.composite
def mha_setup(draw):
    H = draw(st.integers(1, 4))
    D = H * draw(st.integers(1, 4))
    cross = draw(st.booleans())
    kdim = draw(st.sampled_from([None, 3, 5])) if cross else None
    vdim = draw(st.sampled_from([None, 2, 6])) if cross else None
    B, L = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    S = draw(st.integers(1, 6)) if cross else L
    bias = draw(st.booleans())
    mask_kind = draw(st.sampled_from(["none", "bool2", "bool3", "bool4", "float", "padding", "causal", "causal+padding"]))
    seed = draw(st.integers(0, 10_000))
    return dict(H=H, D=D, kdim=kdim, vdim=vdim, B=B, L=L, S=S, bias=bias, cross=cross, mask_kind=mask_kind, seed=seed)


@SETTINGS
@given(mha_setup())
def test_matches_torch_multihead_attention(cfg):
    H, D, B, L, S = cfg["H"], cfg["D"], cfg["B"], cfg["L"], cfg["S"]
    ref, ours = make_pair(D, H, bias=cfg["bias"], kdim=cfg["kdim"], vdim=cfg["vdim"], seed=cfg["seed"])
    g = torch.Generator().manual_seed(cfg["seed"])
    query = randn(g, B, L, D)
    if cfg["cross"]:
        key, value = randn(g, B, S, ours.kdim), randn(g, B, S, ours.vdim)
    else:
        key = value = query
    ours_kw, torch_kw = {}, {}
    kind = cfg["mask_kind"]
    if kind.startswith("bool"):
        shape = {"bool2": (L, S), "bool3": (B, L, S), "bool4": (B, H, L, S)}[kind]
        m = some_allowed(g, *shape)
        ours_kw["attn_mask"], torch_kw["attn_mask"] = m, torch_attn_mask(m, H)
    elif kind == "float":
        m = randn(g, L, S)
        ours_kw["attn_mask"] = torch_kw["attn_mask"] = m  # additive in both libraries
    if "padding" in kind:
        lengths = torch.randint(1, S + 1, (B,), generator=g)
        if kind == "causal+padding":
            lengths = torch.full((B,), S)  # keep key 0 real, so no row is fully masked
            lengths[0] = max(1, S - 1)
        kpm = padding_mask(lengths, S)  # (B, S), True = real token
        ours_kw["key_padding_mask"], torch_kw["key_padding_mask"] = kpm, ~kpm
    if "causal" in kind:
        ours_kw["is_causal"] = True
        torch_kw["attn_mask"], torch_kw["is_causal"] = ~causal_mask(L, S), True  # torch needs the mask too

    out, w = ours(query, key, value, need_weights=True, **ours_kw)
    ref_out, ref_w = ref(query, key, value, need_weights=True, average_attn_weights=False, **torch_kw)
    assert out.shape == (B, L, D) and w.shape == (B, H, L, S)
    assert_close_scaled(out, ref_out)
    torch.testing.assert_close(w, ref_w, **TOL)  # weights lie in [0, 1]: plain 1e-6
    # need_weights=False (torch may take its fused fast path) gives the same output
    ref_fast = ref(query, key, value, need_weights=False, **torch_kw)[0]
    assert_close_scaled(ours(query, key, value, **ours_kw), ref_fast)


def test_self_attention_defaults_key_and_value_to_query():
    ref, ours = make_pair(8, 2)
    x = randn(torch.Generator().manual_seed(1), 2, 5, 8)
    torch.testing.assert_close(ours(x), ref(x, x, x)[0], **TOL)
    y = randn(torch.Generator().manual_seed(2), 2, 4, 8)
    torch.testing.assert_close(ours(x, y), ref(x, y, y)[0], **TOL)  # value defaults to key


def test_parameter_count_equals_torch_and_formula():
    for D, H, kdim, vdim, bias in [(8, 2, None, None, True), (12, 3, None, None, False), (8, 4, 5, 3, True)]:
        ref = nn.MultiheadAttention(D, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
        ours = MultiHeadAttention(D, H, bias=bias, kdim=kdim, vdim=vdim)
        n = sum(p.numel() for p in ours.parameters())
        assert n == sum(p.numel() for p in ref.parameters())
        if kdim is None:
            assert n == (4 * D * D + 4 * D if bias else 4 * D * D)


def test_attributes_and_names():
    m = MultiHeadAttention(12, 3, kdim=5, vdim=7)
    assert m.num_heads == 3 and m.head_dim == 4
    assert m.W_query.weight.shape == (12, 12) and m.W_key.weight.shape == (12, 5)
    assert m.W_value.weight.shape == (12, 7) and m.W_out.weight.shape == (12, 12)


# ------------------------------------------------------------------------------------------------
# The paper's formula: a loop over heads equals the batched computation
# ------------------------------------------------------------------------------------------------


def loop_over_heads(m, query, key, value):
    """Concat_h softmax(Q W_q^h (K W_k^h)^T / sqrt(d_h)) V W_v^h, then W_out: one head at a time."""
    Dh = m.head_dim
    heads = []
    for h in range(m.num_heads):
        rows = slice(h * Dh, (h + 1) * Dh)  # head h owns these output features of each projection
        bq = m.W_query.bias[rows] if m.W_query.bias is not None else 0
        bk = m.W_key.bias[rows] if m.W_key.bias is not None else 0
        bv = m.W_value.bias[rows] if m.W_value.bias is not None else 0
        q = query @ m.W_query.weight[rows].T + bq  # (B, L, D) @ (D, Dh) -> (B, L, Dh)
        k = key @ m.W_key.weight[rows].T + bk  # (B, S, kdim) @ (kdim, Dh) -> (B, S, Dh)
        v = value @ m.W_value.weight[rows].T + bv  # (B, S, vdim) @ (vdim, Dh) -> (B, S, Dh)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(Dh), dim=-1)  # (B, L, S)
        heads.append(w @ v)  # (B, L, S) @ (B, S, Dh) -> (B, L, Dh)
    return m.W_out(torch.cat(heads, dim=-1))  # (B, L, H*Dh) -> (B, L, D)


@pytest.mark.parametrize("D, H, kdim, vdim, bias", [(8, 2, None, None, True), (12, 4, 5, 7, True), (6, 3, None, None, False)])
def test_loop_over_heads_equals_batched(D, H, kdim, vdim, bias):
    torch.manual_seed(3)
    m = MultiHeadAttention(D, H, bias=bias, kdim=kdim, vdim=vdim).eval()
    g = torch.Generator().manual_seed(4)
    q, k, v = randn(g, 2, 3, D), randn(g, 2, 5, m.kdim), randn(g, 2, 5, m.vdim)
    torch.testing.assert_close(m(q, k, v), loop_over_heads(m, q, k, v), **TOL)


# ------------------------------------------------------------------------------------------------
# Masks, causality, dropout, dtypes, gradients
# ------------------------------------------------------------------------------------------------


def test_causal_future_tokens_do_not_change_earlier_outputs():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 2).eval()
    x = randn(torch.Generator().manual_seed(5), 1, 6, 8)
    y = x.clone()
    y[:, 3:] += 10.0  # change tokens 3, 4, 5
    a, b = m(x, is_causal=True), m(y, is_causal=True)
    torch.testing.assert_close(a[:, :3], b[:, :3], **TOL)
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_padding_keys_get_zero_weight_and_do_not_matter():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 4).eval()
    g = torch.Generator().manual_seed(6)
    x = randn(g, 2, 5, 8)
    kpm = padding_mask([5, 3])  # second sequence: tokens 3, 4 are padding
    out, w = m(x, key_padding_mask=kpm, need_weights=True)
    assert (w[1, :, :, 3:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))
    y = x.clone()
    y[1, 3:] = randn(g, 2, 8) * 5  # change the padding tokens' vectors
    torch.testing.assert_close(m(y, key_padding_mask=kpm)[1, :3], out[1, :3], **TOL)


def test_float_and_bool_masks_agree_and_combine():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 2).eval()
    g = torch.Generator().manual_seed(7)
    x = randn(g, 2, 4, 8)
    allowed = some_allowed(g, 4, 4)
    additive = torch.zeros(4, 4).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(m(x, attn_mask=allowed), m(x, attn_mask=additive), **TOL)
    # causal combined with a float mask = causal combined with the bool mask
    torch.testing.assert_close(m(x, attn_mask=additive, is_causal=True),
                               m(x, attn_mask=allowed & causal_mask(4)), **TOL)
    kpm = padding_mask([4, 2])
    both = allowed[None] & kpm[:, None, :]  # (B, L, S)
    torch.testing.assert_close(m(x, attn_mask=additive, key_padding_mask=kpm), m(x, attn_mask=both), **TOL)


def test_fully_masked_rows_give_zero_weights_not_nan():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 2, bias=False).eval()
    x = randn(torch.Generator().manual_seed(8), 1, 3, 8)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    out, w = m(x, attn_mask=mask, need_weights=True)
    assert torch.isfinite(out).all() and (w[:, :, 1] == 0).all() and (out[:, 1] == 0).all()


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 2, dropout=0.5)
    x = randn(torch.Generator().manual_seed(9), 2, 6, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    ref = MultiHeadAttention(8, 2)
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x), ref(x))
    m.train()
    torch.manual_seed(1)
    _, w = m(x, need_weights=True)
    assert (w == 0).any()  # some weights dropped
    assert not torch.allclose(m(x), ref.eval()(x))


def test_from_torch_keeps_dtype_mode_dropout_and_copies():
    ref = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True, dtype=torch.float64)
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.W_query.weight.dtype == torch.float64 and ours.dropout == pytest.approx(0.1) and ours.training
    with torch.no_grad():
        ours.W_query.weight.zero_()
    assert ref.in_proj_weight.abs().sum() > 0  # independent copies


def test_to_float64_and_gradcheck():
    torch.manual_seed(0)
    m = MultiHeadAttention(4, 2, kdim=3, vdim=5).to(torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    g = torch.Generator().manual_seed(10)
    q = randn(g, 2, 3, 4, dtype=torch.float64).requires_grad_()
    k = randn(g, 2, 4, 3, dtype=torch.float64).requires_grad_()
    v = randn(g, 2, 4, 5, dtype=torch.float64).requires_grad_()
    mask = some_allowed(g, 3, 4)
    assert m(q, k, v).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda q, k, v: m(q, k, v, attn_mask=mask), (q, k, v))
    # gradients reach every parameter
    m(q, k, v).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_half_precision_runs():
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 2).to(torch.bfloat16).eval()
    x = randn(torch.Generator().manual_seed(11), 1, 4, 8).to(torch.bfloat16)
    out = m(x, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------

_M = MultiHeadAttention(8, 2, kdim=6)
_X = torch.zeros(2, 3, 8)
_K = torch.zeros(2, 5, 6)
_V = torch.zeros(2, 5, 8)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: MultiHeadAttention(10, 3), ValueError, ["embed_dim=10", "num_heads=3"]),
        (lambda: MultiHeadAttention(8, 0), ValueError, ["num_heads"]),
        (lambda: MultiHeadAttention(8, 2, dropout=1.0), ValueError, ["dropout"]),
        (lambda: MultiHeadAttention(8.0, 2), TypeError, ["embed_dim"]),
        (lambda: _M(torch.zeros(2, 3, 7), _K, _V), ValueError, ["query", "(2, 3, 7)", "embed_dim"]),
        (lambda: _M(torch.zeros(3, 8), _K, _V), ValueError, ["query", "(3, 8)"]),
        (lambda: _M(_X, torch.zeros(2, 5, 8), _V), ValueError, ["key", "(2, 5, 8)", "kdim"]),
        (lambda: _M(_X, _K, torch.zeros(2, 4, 8)), ValueError, ["value", "S", "(2, 4, 8)"]),
        (lambda: _M(_X, _K, torch.zeros(2, 5, 3)), ValueError, ["value", "vdim"]),
        (lambda: _M(_X, torch.zeros(1, 5, 6), torch.zeros(1, 5, 8)), ValueError, ["batch size"]),
        (lambda: _M(_X.double(), _K.double(), _V.double()), TypeError, ["query", "float64"]),
        (lambda: _M(_X.long(), _K, _V), TypeError, ["query"]),
        (lambda: _M(_X, _K, _V, key_padding_mask=torch.ones(2, 3, dtype=torch.bool)), ValueError,
         ["key_padding_mask", "(2, 5)", "(2, 3)"]),
        (lambda: _M(_X, _K, _V, key_padding_mask=torch.ones(2, 5, dtype=torch.long)), TypeError, ["key_padding_mask"]),
        (lambda: _M(_X, _K, _V, attn_mask=torch.ones(5, 3, dtype=torch.bool)), ValueError, ["attn_mask", "(3, 5)", "(5, 3)"]),
        (lambda: _M(_X, _K, _V, attn_mask=torch.ones(2, 2, 3, 5, 1, dtype=torch.bool)), ValueError, ["attn_mask"]),
        (lambda: _M(_X, _K, _V, attn_mask=torch.ones(4, 3, 5, dtype=torch.bool)), ValueError, ["attn_mask", "(2, 3, 5)"]),
        (lambda: _M(_X, _K, _V, attn_mask=torch.ones(3, 5, dtype=torch.int32)), TypeError, ["attn_mask"]),
        (lambda: _M(_X, _K, _V, attn_mask=[[True]]), TypeError, ["attn_mask"]),
        (lambda: _M(_X, _K, _V, is_causal=1), TypeError, ["is_causal"]),
        (lambda: _M(_X, _K, _V, need_weights="yes"), TypeError, ["need_weights", "bool"]),
        (lambda: MultiHeadAttention(8, 2, bias="no"), TypeError, ["bias", "bool"]),
        (lambda: MultiHeadAttention(8, 2, dropout="0.1"), TypeError, ["dropout"]),
        (lambda: _M(_X.to("meta"), _K.to("meta"), _V.to("meta")), ValueError, ["query on meta", "parameters on cpu"]),
        (lambda: MultiHeadAttention.from_torch(nn.Linear(2, 2)), TypeError, ["mha"]),
        (lambda: MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2)), ValueError, ["batch_first"]),
        (lambda: MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True)),
         ValueError, ["add_bias_kv"]),
        (lambda: MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, batch_first=True, add_zero_attn=True)),
         ValueError, ["add_zero_attn"]),
    ],
)
def test_bad_inputs(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))
