"""Every public function of attention, masking, multihead and positional on every device and dtype.

Devices (the ``device`` fixture of tests/conftest.py): each function runs on cpu, on meta (no
values exist there, so any host read, ``.item()`` or data-dependent shape would raise: passing on
meta proves the function never makes the CPU wait for a GPU) and on cuda where there is one. The
result's shape, dtype and device are compared with the CPU's, and its numbers too wherever the
device has numbers.

Dtypes: property tests in float16 and bfloat16 on the CPU against PyTorch, with tolerances
``c * u`` from the unit roundoff u of the format (float16 u = 2**-11, bfloat16 u = 2**-8; one
rounding to the format is off by at most u relative, two roundings of nearly equal numbers land
at most one ulp = 2u apart). Each test states its c. benchmarks/dtype_errors.py prints the
largest errors seen.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import has_data
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from course_lib import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    causal_mask,
    combine_masks,
    dot_product_scores,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_encoding,
    softmax,
    split_heads,
    to_additive,
)

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
HALF = list(UNIT_ROUNDOFF)


# ------------------------------------------------------------------------------------------------
# Devices: every public function and module, on cpu, meta and cuda
# ------------------------------------------------------------------------------------------------


def _randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _mha(device, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    module = MultiHeadAttention(8, 2, **kwargs)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)  # random biases too (the default ones are 0)
    return module.to(device=device, dtype=dtype)


def _learned(device, dtype=torch.float32):
    torch.manual_seed(0)
    return LearnedPositionalEmbedding(6, 8).to(device=device, dtype=dtype)


def _lengths(device):
    return torch.tensor([3, 0, 4]).to(device)  # sequence 1 is empty: a fully masked row


# Each case builds its inputs on the device it is given and returns the outputs: the same call on
# the CPU is the reference. Inputs are drawn on the CPU and moved, so both calls see one set of numbers.
CASES = {
    "dot_product_scores": lambda d, t: dot_product_scores(_randn(2, 3, 4, dtype=t).to(d), _randn(2, 5, 4, dtype=t, seed=1).to(d), scale=0.5),
    "softmax": lambda d, t: softmax(_randn(2, 3, 7, dtype=t).to(d) * 30, dim=1),
    "sdpa": lambda d, t: scaled_dot_product_attention(
        _randn(2, 2, 3, 4, dtype=t).to(d), _randn(2, 2, 5, 4, dtype=t, seed=1).to(d), _randn(2, 2, 5, 6, dtype=t, seed=2).to(d),
        return_weights=True),
    "sdpa bool mask": lambda d, t: scaled_dot_product_attention(
        _randn(2, 3, 4, dtype=t).to(d), _randn(2, 5, 4, dtype=t, seed=1).to(d), _randn(2, 5, 6, dtype=t, seed=2).to(d),
        attn_mask=padding_mask(_lengths(d)[:2], 5)[:, None, :], return_weights=True),  # row 1 fully masked
    "sdpa float mask": lambda d, t: scaled_dot_product_attention(
        _randn(2, 3, 4, dtype=t).to(d), _randn(2, 5, 4, dtype=t, seed=1).to(d), _randn(2, 5, 6, dtype=t, seed=2).to(d),
        attn_mask=_randn(3, 5, dtype=t, seed=3).to(d), scale=0.7),
    "sdpa causal": lambda d, t: scaled_dot_product_attention(
        _randn(3, 4, dtype=t).to(d), _randn(5, 4, dtype=t, seed=1).to(d), _randn(5, 2, dtype=t, seed=2).to(d), is_causal=True),
    "causal_mask": lambda d, t: causal_mask(4, 6, device=d),
    "padding_mask": lambda d, t: padding_mask(_lengths(d), 6),
    "combine_masks": lambda d, t: combine_masks(causal_mask(5, device=d), padding_mask(_lengths(d), 5)[:, None, :]),
    "to_additive": lambda d, t: to_additive(causal_mask(3, 4, device=d), t),
    "split_heads": lambda d, t: split_heads(_randn(2, 3, 8, dtype=t).to(d), 4),
    "merge_heads": lambda d, t: merge_heads(_randn(2, 4, 3, 2, dtype=t).to(d)),
    "MultiHeadAttention": lambda d, t: _mha(d, t)(
        _randn(3, 4, 8, dtype=t).to(d), need_weights=True, is_causal=True,
        key_padding_mask=padding_mask(_lengths(d), 4), attn_mask=_randn(4, 4, dtype=t, seed=1).to(d)),
    "MultiHeadAttention cross": lambda d, t: _mha(d, t, kdim=3, vdim=5)(
        _randn(2, 4, 8, dtype=t).to(d), _randn(2, 6, 3, dtype=t, seed=1).to(d), _randn(2, 6, 5, dtype=t, seed=2).to(d)),
    "sinusoidal_encoding": lambda d, t: sinusoidal_encoding(9, 6, dtype=t, device=d),
    "LearnedPositionalEmbedding": lambda d, t: _learned(d, t)(_randn(2, 5, 8, dtype=t).to(d)),
    "apply_rope": lambda d, t: apply_rope(_randn(2, 2, 5, 6, dtype=t).to(d), positions=torch.arange(3, 8).to(d)),
    "alibi_slopes": lambda d, t: alibi_slopes(6, dtype=t, device=d),
    "alibi_bias": lambda d, t: alibi_bias(3, 4, 5, dtype=t, device=d),
}

# float16 results are compared with float16 on the CPU: the same algorithm, so the same numbers
# up to the order of additions inside the kernels (c = 4 covers it: 2 roundings apart, twice).
DEVICE_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=4 * 2.0**-11, atol=4 * 2.0**-11)}


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_function_runs_on_the_device_and_agrees_with_the_cpu(name, dtype, device):
    """Shape, dtype and device as on the CPU; on meta that proves no host read; elsewhere equal numbers."""
    build = CASES[name]
    expected = _as_tuple(build(torch.device("cpu"), dtype))
    got = _as_tuple(build(device, dtype))
    assert len(got) == len(expected)
    for out, ref in zip(got, expected):
        assert out.device.type == device.type, f"{name}: result on {out.device}, inputs on {device}"
        assert out.shape == ref.shape and out.dtype == ref.dtype, f"{name}: {out.shape}/{out.dtype} vs cpu {ref.shape}/{ref.dtype}"
        if has_data(device):
            if ref.dtype == torch.bool:
                assert torch.equal(out.cpu(), ref)
            else:
                torch.testing.assert_close(out.cpu(), ref, **DEVICE_TOL[dtype if ref.is_floating_point() else torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_results_keep_the_inputs_dtype(dtype, device):
    q, k, v = (torch.zeros(2, 3, 4, dtype=dtype, device=device) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(3, 3, dtype=dtype, device=device), return_weights=True)
    assert out.dtype == w.dtype == dtype and out.device.type == w.device.type == device.type
    assert softmax(q).dtype == dtype and dot_product_scores(q, k).dtype == dtype
    mha = MultiHeadAttention(4, 2).to(device=device, dtype=dtype)
    assert mha(q, need_weights=True)[1].dtype == dtype
    assert apply_rope(q).dtype == dtype and _learned(device, dtype)(q[..., :8].repeat(1, 1, 2)).dtype == dtype
    for table in (sinusoidal_encoding(3, 4, dtype=dtype, device=device), alibi_bias(2, 3, dtype=dtype, device=device),
                  to_additive(causal_mask(3, device=device), dtype)):
        assert table.dtype == dtype and table.device.type == device.type


def test_padding_mask_of_a_tensor_reads_no_values_on_the_host():
    """Fails if padding_mask calls .item()/.tolist()/bool() on a tensor of lengths (meta tensors have no values)."""
    lengths = torch.tensor([2, 0, 4], device="meta")
    mask = padding_mask(lengths, 5)
    assert mask.shape == (3, 5) and mask.dtype == torch.bool and mask.device.type == "meta"
    with pytest.raises(RuntimeError):  # asked for, the value checks do read the host
        padding_mask(lengths, 5, validate=True)


def test_padding_mask_checks_tensor_values_only_when_asked():
    lengths = torch.tensor([2, -1, 7])
    unchecked = padding_mask(lengths, 5)  # a tensor: no host read by default
    assert torch.equal(unchecked, torch.tensor([[True, True, False, False, False], [False] * 5, [True] * 5]))
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        padding_mask(lengths, 5, validate=True)
    with pytest.raises(ValueError, match="S=5 is shorter"):
        padding_mask(torch.tensor([2, 7]), 5, validate=True)
    with pytest.raises(ValueError, match="S=5 is shorter"):
        padding_mask([2, 7], 5)  # a list: checked by default (its values are on the host already)
    assert torch.equal(padding_mask([2, 7], 5, validate=False)[1], torch.ones(5, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------
# Tensors on different devices: one clear error before any work (cpu vs meta, no GPU needed)
# ------------------------------------------------------------------------------------------------


def _cpu_meta_calls():
    cpu = lambda *s: torch.randn(*s)  # noqa: E731
    meta = lambda *s: torch.randn(*s, device="meta")  # noqa: E731
    return [
        (lambda: scaled_dot_product_attention(cpu(2, 3, 4), meta(2, 5, 4), cpu(2, 5, 6)), ["query on cpu", "key on meta", "value on cpu"]),
        (lambda: scaled_dot_product_attention(cpu(2, 3, 4), cpu(2, 5, 4), meta(2, 5, 6)), ["value on meta"]),
        (lambda: scaled_dot_product_attention(cpu(2, 3, 4), cpu(2, 5, 4), cpu(2, 5, 6),
                                              attn_mask=torch.ones(3, 5, dtype=torch.bool, device="meta")), ["attn_mask on meta"]),
        (lambda: scaled_dot_product_attention(meta(2, 3, 4), meta(2, 5, 4), meta(2, 5, 6),
                                              attn_mask=torch.zeros(3, 5)), ["attn_mask on cpu", "query on meta"]),
        (lambda: dot_product_scores(cpu(3, 4), meta(5, 4)), ["query on cpu", "key on meta"]),
        (lambda: combine_masks(causal_mask(3), causal_mask(3, device="meta")), ["masks[0] on cpu", "masks[1] on meta"]),
        (lambda: MultiHeadAttention(4, 2)(meta(2, 3, 4)), ["query on meta", "parameters on cpu"]),
        (lambda: MultiHeadAttention(4, 2)(cpu(2, 3, 4), meta(2, 5, 4)), ["key on meta"]),
        (lambda: LearnedPositionalEmbedding(4, 8)(meta(2, 3, 8)), ["meta", "cpu"]),
    ]


@pytest.mark.parametrize("index", range(len(_cpu_meta_calls())))
def test_tensors_on_different_devices_are_one_clear_error(index):
    call, words = _cpu_meta_calls()[index]
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


# ------------------------------------------------------------------------------------------------
# Dtypes: float16 and bfloat16 against PyTorch, on the CPU
# ------------------------------------------------------------------------------------------------


def _torch_reference(q, k, v, dtype, **kwargs):
    """PyTorch's MATH backend on the same numbers in float32, the result rounded once to ``dtype``."""
    mask = kwargs.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kwargs = dict(kwargs, attn_mask=mask.float())
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(dtype)


@st.composite
def half_attention_inputs(draw):
    """(q, k, v, kwargs, fully_masked_rows) in float16 or bfloat16.

    "large": integer queries and keys up to 256 (exact in both formats) with one query/key pair
    all 256, so that some score exceeds 65504 (float16's largest finite value) before scaling,
    and a scale that is a power of 4: every score is then exact in float32, in our order of
    operations and in PyTorch's (which scales q and k by sqrt(scale)), and the comparison
    measures the half-precision handling only.
    """
    dtype = draw(st.sampled_from(HALF))
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    L, S = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    Ev = draw(st.integers(1, 8))
    magnitude = draw(st.sampled_from(["normal", "large"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    kwargs = {}
    if magnitude == "normal":
        E = draw(st.integers(1, 32))
        q, k = torch.randn(B, H, L, E, generator=g), torch.randn(B, H, S, E, generator=g)
        if draw(st.booleans()):
            kwargs["scale"] = draw(st.floats(0.05, 2.0))
    else:
        E = draw(st.integers(1, 16))
        q = torch.randint(-256, 257, (B, H, L, E), generator=g).float()
        k = torch.randint(-256, 257, (B, H, S, E), generator=g).float()
        q[..., 0, :] = 256.0
        k[..., 0, :] = 256.0
        kwargs["scale"] = draw(st.sampled_from([1.0, 0.25, 0.0625]))
    v = torch.randn(B, H, S, Ev, generator=g)
    kind = draw(st.sampled_from(["none", "bool", "causal"] + (["float"] if magnitude == "normal" else [])))
    full = torch.zeros(B, H, L, dtype=torch.bool)
    if kind == "bool":
        mask = torch.rand(B, 1, L, S, generator=g) > 0.4
        mask[0, 0, L // 2] = False  # at least one fully masked query row
        kwargs["attn_mask"] = mask
        full = ~mask.any(-1).expand(B, H, L)
    elif kind == "float":
        kwargs["attn_mask"] = (2 * torch.randn(L, S, generator=g)).to(dtype)
    elif kind == "causal":
        kwargs["is_causal"] = True
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    return q, k, v, kwargs, full


@settings(max_examples=60, deadline=None)
@given(half_attention_inputs())
def test_half_attention_matches_torch_in_float32(inputs):
    """Against PyTorch in float32 on the same half inputs, rounded to the format: atol = rtol = 2u.

    c = 2: both sides compute in float32 (they differ by ~1e-6 relative) and round once to the
    half format; two nearly equal numbers rounded once each land at most one ulp (2u relative)
    apart. Fully masked rows are zeros here (PyTorch may give NaN there): asserted separately.
    Before the float32 upcast, the "large" examples gave NaN in float16 (the scores overflow to
    inf) and wrong weights in bfloat16 (scores of 1e5 rounded to 8 bits).
    """
    q, k, v, kwargs, full = inputs
    u = UNIT_ROUNDOFF[q.dtype]
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    assert ours.dtype == q.dtype and ours.shape == q.shape[:-1] + v.shape[-1:]
    assert torch.isfinite(ours).all()
    assert (ours[full] == 0).all()
    ref = _torch_reference(q, k, v, q.dtype, **kwargs)
    torch.testing.assert_close(ours[~full].float(), ref[~full].float(), atol=2 * u, rtol=2 * u)


@settings(max_examples=40, deadline=None)
@given(half_attention_inputs())
def test_half_attention_matches_torchs_own_half_result(inputs):
    """Against ``F.scaled_dot_product_attention`` on the half tensors themselves: atol = rtol = 4u.

    c = 4: PyTorch's half kernels may round once more inside (the weights before ``weights @ V``,
    at most u relative), on top of the 2u between two final roundings, plus margin for float32
    noise. Rows where either side is not a number (fully masked, torch may give NaN) are skipped.
    """
    q, k, v, kwargs, full = inputs
    u = UNIT_ROUNDOFF[q.dtype]
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
    rows = ~full & torch.isfinite(theirs).all(-1)
    torch.testing.assert_close(ours[rows].float(), theirs[rows].float(), atol=4 * u, rtol=4 * u)


def test_float16_scores_above_65504_do_not_overflow():
    """The review's case: every score is 102400 before scaling; PyTorch is finite, so must we be."""
    q = torch.full((1, 2, 64), 40.0, dtype=torch.float16)
    k = torch.full((1, 3, 64), 40.0, dtype=torch.float16)
    v = torch.randn(1, 3, 5).half()
    scores = q.float() @ k.float().mT  # (1, 2, 3)
    assert (scores > 65504).all()
    ours = scaled_dot_product_attention(q, k, v, scale=1.0)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, v.float().mean(1, keepdim=True).expand(1, 2, 5).half(), atol=2**-10, rtol=2**-10)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, scale=1.0), atol=2**-9, rtol=2**-9)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(HALF), st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(1, 600),
       st.floats(-1.0, 4.78).map(lambda e: 10**e), st.integers(0, 2**31 - 1))
def test_half_softmax_is_float32_softmax_rounded(dtype, batch, n, spread, seed):
    """softmax on half input = torch.softmax in float32, rounded to the format: atol = rtol = 2u (c = 2 as above).

    Spreads up to 6e4 (near float16's 65504) and rows of up to 600 entries: computed in the half
    format, exp(x - max) and a long sum would lose most of their digits.
    """
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*batch, n, generator=g) * spread).clamp(-65504, 65504).to(dtype)
    x[..., 0] = float("-inf")  # a blocked entry; and a fully blocked row below
    x.view(-1, n)[0] = float("-inf")
    u = UNIT_ROUNDOFF[dtype]
    ours = softmax(x)
    ref = torch.softmax(x.float(), dim=-1).nan_to_num(0.0).to(dtype)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.float(), ref.float(), atol=2 * u, rtol=2 * u)
    assert (ours.view(-1, n)[0] == 0).all()


@st.composite
def half_mha_inputs(draw):
    dtype = draw(st.sampled_from(HALF))
    H = draw(st.integers(1, 4))
    D = H * draw(st.integers(1, 8))
    B, L, S = draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return dtype, H, D, B, L, S, draw(st.booleans()), draw(st.integers(0, 10_000))


@settings(max_examples=30, deadline=None)
@given(half_mha_inputs())
def test_half_multihead_matches_torch(cfg):
    """Against ``nn.MultiheadAttention`` in float32 (rounded) and in the half format itself: atol = c u max|ref|, rtol = c u.

    c = 16: the half module rounds after each of the three input projections, after attention
    and after the output projection (each at most one ulp = 2u of the largest entry of the
    tensor it rounds, and a linear map passes that on in proportion to its output's scale),
    and the softmax turns a score error into a relative weight error of the same size. The
    measured worst case is about 6u (benchmarks/dtype_errors.py); 16 leaves margin without
    hiding an error of a whole term, which is of the order of the output itself.
    """
    dtype, H, D, B, L, S, use_padding, seed = cfg
    u = UNIT_ROUNDOFF[dtype]
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_(0, 0.1)
        ref.out_proj.bias.normal_(0, 0.1)
        for p in ref.parameters():
            p.copy_(p.to(dtype).float())  # the weights both sides use: exact in the half format
    half_ref = copy.deepcopy(ref).to(dtype)
    ours = MultiHeadAttention.from_torch(half_ref)
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(B, L, D, generator=g)).to(dtype)
    mem = (3 * torch.randn(B, S, D, generator=g)).to(dtype)
    keep = None
    if use_padding:
        keep = torch.rand(B, S, generator=g) > 0.3
        keep[:, 0] = True  # torch gives NaN for a query with no key at all
    with torch.no_grad():
        got = ours(x, mem, mem, key_padding_mask=keep)
        expected = ref(x.float(), mem.float(), mem.float(), key_padding_mask=None if keep is None else ~keep,
                       need_weights=False)[0]
        theirs = half_ref(x, mem, mem, key_padding_mask=None if keep is None else ~keep, need_weights=False)[0]
    assert got.dtype == dtype and got.shape == (B, L, D)
    c = 16
    atol = c * u * max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(got.float(), expected, atol=atol, rtol=c * u)
    torch.testing.assert_close(got.float(), theirs.float(), atol=atol, rtol=c * u)
