"""course_lib.efficient against PyTorch's attention and the papers' formulas, on random shapes."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import course_lib.efficient as efficient
import course_lib.efficient.tiled_fast as tiled_fast
from course_lib import causal_mask, scaled_dot_product_attention
from course_lib.efficient import (
    KVCache,
    MemoryTracker,
    decode_step,
    elu_feature_map,
    flash_attention,
    linear_attention,
    loglog_slope,
    median_time,
    online_softmax,
    sliding_window_mask,
    tiled_attention,
)

SETTINGS = settings(max_examples=60, deadline=None)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


# ----- tiled_attention ----------------------------------------------------------------------


@st.composite
def tiled_inputs(draw):
    """Random (query, key, value, kwargs, block_size): batch dims, L != S, every mask kind, large scores."""
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    L, S = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    E, Ev = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    magnitude = draw(st.sampled_from([1.0, 1.0, 8.0]))  # 8: scores beyond the no-overflow bound
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(*batch, L, E, generator=g, dtype=dtype) * magnitude
    k = torch.randn(*batch, S, E, generator=g, dtype=dtype) * magnitude
    v = torch.randn(*batch, S, Ev, generator=g, dtype=dtype)
    kind = draw(st.sampled_from(["none", "bool", "bool-broadcast", "bool-padding", "float", "float-inf", "causal"]))
    kwargs = {}
    if kind == "bool":
        kwargs["attn_mask"] = torch.rand(*batch, L, S, generator=g) > 0.3
    elif kind == "bool-broadcast":
        kwargs["attn_mask"] = torch.rand(L, S, generator=g) > 0.3  # (L, S) for every batch entry
    elif kind == "bool-padding":
        kwargs["attn_mask"] = torch.rand(*batch, 1, S, generator=g) > 0.3  # (..., 1, S) padding-style
    elif kind == "float":
        kwargs["attn_mask"] = torch.randn(*batch, L, S, generator=g, dtype=dtype)
    elif kind == "float-inf":
        kwargs["attn_mask"] = torch.randn(L, S, generator=g, dtype=dtype).masked_fill(
            torch.rand(L, S, generator=g) < 0.3, float("-inf"))
    elif kind == "causal":
        kwargs["is_causal"] = True
    if draw(st.booleans()):
        kwargs["scale"] = draw(st.floats(0.05, 3.0))
    block_size = draw(st.integers(1, 14))
    return q, k, v, kwargs, block_size


@SETTINGS
@given(tiled_inputs(), st.integers(1, 13))
def test_flash_attention_algorithm_1_matches_torch_and_the_fast_path(inputs, block_rows):
    """The readable Algorithm 1 (B_r x B_c tiles) = torch's SDPA = the fast tiled path, on every mask kind."""
    q, k, v, kwargs, block_cols = inputs
    ours = flash_attention(q, k, v, block_rows=block_rows, block_cols=block_cols, **kwargs)
    expected = scaled_dot_product_attention(q, k, v, **kwargs)  # zeros on fully masked rows, as course_lib
    torch.testing.assert_close(ours, expected, **TOL[q.dtype])
    torch.testing.assert_close(ours, tiled_attention(q, k, v, block_size=block_cols, **kwargs), **TOL[q.dtype])


def test_flash_attention_keeps_one_tile_of_scores():
    """Only B_r x B_c scores exist at a time: extra memory O(L) (O, l, m) plus tiles, never L x S."""
    g = torch.Generator().manual_seed(0)
    peaks = {}
    for L in (256, 512):
        q, k, v = (torch.randn(L, 16, generator=g) for _ in range(3))
        with MemoryTracker() as tracker:
            flash_attention(q, k, v, block_rows=32, block_cols=32)
        peaks[L] = tracker.peak
        assert tracker.peak < L * L * 4 / 4  # far below one (L, S) float32 matrix of weights
    assert peaks[512] / peaks[256] < 2.5  # doubling L doubles the memory (O(L)); the weights would quadruple


def test_flash_attention_in_half_precision_does_not_overflow():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 9, 8, generator=g) * 40 for _ in range(3))  # scores far beyond exp's float16 range
    ours = flash_attention(q.half(), k.half(), v.half(), block_rows=4, block_cols=3)
    reference = F.scaled_dot_product_attention(q.half().float(), k.half().float(), v.half().float())
    assert ours.dtype == torch.float16 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), reference, rtol=2e-3, atol=2e-2)


@pytest.mark.parametrize("bad, error, word", [
    (dict(block_rows=0), ValueError, "block_rows"),
    (dict(block_cols=1.5), TypeError, "block_cols"),
    (dict(is_causal="yes"), TypeError, "is_causal"),
    (dict(scale="x"), TypeError, "scale"),
])
def test_flash_attention_names_the_bad_argument(bad, error, word):
    q = torch.randn(3, 4)
    with pytest.raises(error, match=word):
        flash_attention(q, q, q, **bad)


# ----- measuring cost ---------------------------------------------------------------------


@given(st.floats(-3, 3), st.floats(0.1, 10), st.lists(st.floats(1, 1e4), min_size=2, max_size=8, unique=True))
def test_loglog_slope_recovers_the_exponent_of_a_power_law(p, c, xs):
    if max(xs) / min(xs) < 1.5:
        xs = xs + [min(xs) * 4]  # enough spread for a well-defined slope
    ys = [c * x**p for x in xs]
    assert math.isclose(loglog_slope(xs, ys), p, abs_tol=1e-6)


def test_loglog_slope_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="same length"):
        loglog_slope([1, 2], [1])
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [0, 1])
    with pytest.raises(ValueError, match="distinct"):
        loglog_slope([2, 2], [1, 3])


def test_median_time_calls_once_to_warm_up_then_reps_times():
    calls = []
    seconds = median_time(lambda: calls.append(1), reps=5)
    assert len(calls) == 6 and seconds >= 0.0
    with pytest.raises(ValueError, match="reps"):
        median_time(lambda: None, reps=0)
    with pytest.raises(TypeError, match="fn"):
        median_time(3)


@SETTINGS
@given(tiled_inputs())
def test_tiled_attention_matches_torch_sdpa(inputs):
    q, k, v, kwargs, block_size = inputs
    ours = tiled_attention(q, k, v, block_size=block_size, **kwargs)
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(ours, ref, **TOL[q.dtype])
    assert ours.dtype == q.dtype and ours.shape == ref.shape and ours.device == q.device


@settings(max_examples=25, deadline=None)
@given(tiled_inputs(), st.sampled_from([1, 7, 64]))
def test_tiled_attention_matches_with_tiny_block_groups(inputs, block_elements):
    """Force the row grouping (several groups of batch entries and of queries) on small inputs."""
    q, k, v, kwargs, block_size = inputs
    saved = tiled_fast._BLOCK_ELEMENTS
    tiled_fast._BLOCK_ELEMENTS = block_elements
    try:
        ours = tiled_attention(q, k, v, block_size=block_size, **kwargs)
    finally:
        tiled_fast._BLOCK_ELEMENTS = saved
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, **kwargs), **TOL[q.dtype])


@settings(max_examples=20, deadline=None)
@given(tiled_inputs(), st.integers(2, 3))
def test_tiled_attention_with_worker_threads_matches(inputs, threads):
    """The CPU thread pool path (forced here on small inputs) gives the same numbers."""
    q, k, v, kwargs, block_size = inputs
    saved = tiled_fast._threads_for, tiled_fast._BLOCK_ELEMENTS
    tiled_fast._threads_for = lambda device, scores: threads
    tiled_fast._BLOCK_ELEMENTS = 16
    try:
        ours = tiled_attention(q, k, v, block_size=block_size, **kwargs)
    finally:
        tiled_fast._threads_for, tiled_fast._BLOCK_ELEMENTS = saved
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, **kwargs), **TOL[q.dtype])


def test_worker_threads_are_used_only_without_a_dispatch_mode():
    cpu = torch.device("cpu")
    big = tiled_fast._PARALLEL_MIN_SCORES
    assert tiled_fast._threads_for(cpu, big - 1) == 1  # small inputs: inline
    assert tiled_fast._threads_for(cpu, big) == max(1, torch.get_num_threads())
    with MemoryTracker():
        assert tiled_fast._threads_for(cpu, big) == 1  # the tracker must see every operation


@pytest.mark.parametrize("magnitude", [1.0, 10.0])
@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}])
def test_tiled_attention_at_realistic_size_with_partial_blocks(magnitude, kwargs):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 300, 64, generator=g) * s for s in (magnitude, magnitude, 1.0))
    ours = tiled_attention(q, k, v, block_size=128, **kwargs)  # 300 = 128 + 128 + 44
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, **kwargs), rtol=1e-5, atol=1e-5)


def test_both_paths_are_taken_and_agree():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 40, 16, generator=g) for _ in range(3))
    assert tiled_fast._no_overflow_possible(q, k, v, 0.25, torch.float32)  # small scores: no running max needed
    assert not tiled_fast._no_overflow_possible(q * 100, k, v, 0.25, torch.float32)
    for scale in (1.0, 100.0):  # scores up to ~ 100 * 16: exp would overflow without the running max
        torch.testing.assert_close(tiled_attention(q * scale, k, v, block_size=8),
                                   F.scaled_dot_product_attention(q * scale, k, v), rtol=1e-5, atol=1e-5)


def test_fully_masked_rows_give_zeros_like_course_lib():
    g = torch.Generator().manual_seed(2)
    q, k, v = torch.randn(2, 4, 3, generator=g), torch.randn(2, 9, 3, generator=g), torch.randn(2, 9, 5, generator=g)
    mask = torch.rand(2, 4, 9, generator=g) > 0.4
    mask[0, 1] = False  # query 1 of batch 0 may attend to nothing
    mask[1, :, :5] = False  # batch 1 sees only keys 5..8: the first blocks are empty for every row
    for m in (mask, torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))):
        for large in (False, True):
            qq = q * 50 if large else q
            ours = tiled_attention(qq, k, v, attn_mask=m, block_size=2)
            assert torch.equal(ours[0, 1], torch.zeros(5)) and torch.isfinite(ours).all()
            torch.testing.assert_close(ours, scaled_dot_product_attention(qq, k, v, attn_mask=m), rtol=1e-5, atol=1e-5)


def test_causal_equals_the_causal_mask_and_the_future_does_not_leak():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(tiled_attention(q, k, v, is_causal=True, block_size=3),
                               tiled_attention(q, k, v, attn_mask=causal_mask(10), block_size=3))
    k2, v2 = k.clone(), v.clone()
    k2[:, 6:] += 10.0
    v2[:, 6:] -= 10.0
    before = tiled_attention(q, k, v, is_causal=True, block_size=4)
    after = tiled_attention(q, k2, v2, is_causal=True, block_size=4)
    torch.testing.assert_close(after[:, :6], before[:, :6], rtol=0, atol=1e-12)
    assert not torch.allclose(after[:, 6:], before[:, 6:])


def test_broadcast_batch_dims_like_torch():
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 4, 5, 8, generator=g)  # 4 query heads
    k, v = torch.randn(2, 1, 7, 8, generator=g), torch.randn(2, 1, 7, 3, generator=g)  # one shared key/value head
    torch.testing.assert_close(tiled_attention(q, k, v, block_size=3), F.scaled_dot_product_attention(q, k, v),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiled_attention_half_precision(dtype):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 20, 8, generator=g) for _ in range(3))
    ours = tiled_attention(q.to(dtype), k.to(dtype), v.to(dtype), block_size=6, is_causal=True)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.float(), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=0.05, atol=0.03)


def test_tiled_attention_never_materialises_the_weights():
    g = torch.Generator().manual_seed(6)
    L = S = 512
    q, k, v = (torch.randn(L, 16, generator=g) for _ in range(3))
    weights_bytes = L * S * 4
    with MemoryTracker() as naive:
        scaled_dot_product_attention(q, k, v)
    with MemoryTracker() as tiled:
        out = tiled_attention(q, k, v, block_size=64)
    assert naive.peak >= weights_bytes  # the (L, S) weights exist in the naive version
    assert tiled.peak < weights_bytes / 4  # one (L, 64) block of scores plus small row statistics
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5)


def test_tiled_attention_refuses_autograd():
    q = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="forward pass only"):
        tiled_attention(q, q, q)
    with torch.no_grad():
        assert tiled_attention(q, q, q).shape == (3, 4)


# ----- online_softmax -------------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 2**31 - 1),
       st.sampled_from([torch.float32, torch.float64]), st.floats(0.1, 500.0), st.integers(1, 7))
def test_online_softmax_equals_softmax_on_every_dim(shape, seed, dtype, spread, block_size):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * spread
    for dim in range(-len(shape), len(shape)):
        torch.testing.assert_close(online_softmax(x, dim=dim, block_size=block_size), torch.softmax(x, dim=dim))


def test_online_softmax_masked_entries_and_rows():
    x = torch.tensor([[1.0, float("-inf"), 3.0, float("-inf")], [float("-inf")] * 4, [float("-inf"), 0.0, 1000.0, 2.0]])
    y = online_softmax(x)
    assert torch.equal(y[1], torch.zeros(4)) and torch.isfinite(y).all()
    torch.testing.assert_close(y[[0, 2]], torch.softmax(x[[0, 2]], dim=-1))
    assert y[0, 1] == 0 and y[0, 3] == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_online_softmax_half_keeps_dtype(dtype):
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(0)) * 5
    y = online_softmax(x.to(dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), torch.softmax(x.to(dtype).float(), dim=-1), rtol=1e-2, atol=1e-3)


def test_online_softmax_rescales_when_the_max_grows():
    # an increasing row: every step raises the max, so every step rescales the running sum
    x = torch.arange(0.0, 50.0, 5.0)
    torch.testing.assert_close(online_softmax(x), torch.softmax(x, dim=0))
    torch.testing.assert_close(online_softmax(x.flip(0)), torch.softmax(x.flip(0), dim=0))


# ----- KV cache -------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.integers(1, 4), min_size=1, max_size=8),
       st.integers(1, 5), st.integers(1, 5), st.booleans())
def test_decoding_with_the_cache_equals_full_recomputation(seed, steps, E, Ev, with_heads):
    """Feed the sequence in chunks (a prompt, then tokens); the outputs equal causal attention over it all."""
    g = torch.Generator().manual_seed(seed)
    T = sum(steps)
    batch = (2, 3) if with_heads else (2,)
    q = torch.randn(*batch, T, E, generator=g, dtype=torch.float64)
    k = torch.randn(*batch, T, E, generator=g, dtype=torch.float64)
    v = torch.randn(*batch, T, Ev, generator=g, dtype=torch.float64)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # recomputed from scratch
    cache, outputs, start = KVCache(), [], 0
    for n in steps:
        new = slice(start, start + n)
        outputs.append(decode_step(q[..., new, :], k[..., new, :], v[..., new, :], cache))
        start += n
    torch.testing.assert_close(torch.cat(outputs, dim=-2), full)
    assert len(cache) == T
    torch.testing.assert_close(cache.keys, k, rtol=0, atol=0)
    torch.testing.assert_close(cache.values, v, rtol=0, atol=0)


def test_cache_grows_past_its_capacity_and_keeps_earlier_views():
    g = torch.Generator().manual_seed(7)
    cache = KVCache()
    keys = [torch.randn(1, 2, 1, 4, generator=g) for _ in range(40)]
    first_keys, _ = cache.append(keys[0], keys[0][..., :3])
    for key in keys[1:]:
        cache.append(key, key[..., :3])
    assert len(cache) == 40 and cache.keys.shape == (1, 2, 40, 4) and cache.values.shape == (1, 2, 40, 3)
    torch.testing.assert_close(cache.keys, torch.cat(keys, dim=-2), rtol=0, atol=0)
    torch.testing.assert_close(first_keys, keys[0], rtol=0, atol=0)  # an old view is not overwritten
    cache.reset()
    assert len(cache) == 0 and cache.keys is None


def test_cache_respects_max_length():
    cache = KVCache(max_length=3)
    cache.append(torch.zeros(2, 4), torch.zeros(2, 1))
    cache.append(torch.zeros(1, 4), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="max_length"):
        cache.append(torch.zeros(1, 4), torch.zeros(1, 1))


def test_decoding_flops_grow_linearly_with_the_cache():
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(8)
    E = 8
    cache = KVCache()
    decode_step(*(torch.randn(1, 100, E, generator=g) for _ in range(3)), cache)
    flops = []
    for _ in range(2):
        q, k, v = (torch.randn(1, 1, E, generator=g) for _ in range(3))
        with FlopCounterMode(display=False) as counter:
            decode_step(q, k, v, cache)
        flops.append(counter.get_total_flops())
    assert flops == [2 * 2 * 101 * E, 2 * 2 * 102 * E]  # q @ K^T and w @ V over P + 1 positions


# ----- sliding_window_mask --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 14), st.booleans())
def test_sliding_window_mask_matches_its_definition(L, S, window, causal):
    mask = sliding_window_mask(L, window, S=S, causal=causal)
    assert mask.shape == (L, S) and mask.dtype == torch.bool
    for i in range(L):
        for j in range(S):
            expected = (i - window < j <= i) if causal else abs(i - j) <= window // 2
            assert bool(mask[i, j]) == expected
    if causal:
        assert (mask.sum(-1) <= window).all()
        assert torch.equal(mask & ~causal_mask(L, S), torch.zeros(L, S, dtype=torch.bool))  # never the future


def test_sliding_window_mask_limits():
    assert torch.equal(sliding_window_mask(6, 6), causal_mask(6))  # a window as long as the sequence
    assert torch.equal(sliding_window_mask(6, 1), torch.eye(6, dtype=torch.bool))  # only itself
    assert sliding_window_mask(6, 11, causal=False).all()  # 5 on each side: everything
    two_sided = sliding_window_mask(7, 3, causal=False)
    assert torch.equal(two_sided, two_sided.T)  # symmetric


def test_local_attention_ignores_tokens_outside_the_window():
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(12, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = sliding_window_mask(12, 3)
    before = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[:5] += 7.0  # tokens 0..4 are outside the window of queries 7..11
    v2[:5] += 7.0
    after = scaled_dot_product_attention(q, k2, v2, attn_mask=mask)
    torch.testing.assert_close(after[7:], before[7:], rtol=0, atol=1e-12)


# ----- linear attention -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 10), st.integers(1, 10), st.integers(1, 6), st.integers(1, 6),
       st.integers(1, 5))
def test_linear_attention_equals_the_quadratic_form_of_the_paper(seed, L, S, E, Ev, chunk):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, L, E, generator=g, dtype=torch.float64)
    k = torch.randn(2, S, E, generator=g, dtype=torch.float64)
    v = torch.randn(2, S, Ev, generator=g, dtype=torch.float64)
    similarity = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)  # (2, L, S), eq. 4 with phi
    expected = similarity @ v / (similarity.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v), expected)
    k = torch.randn(2, L, E, generator=g, dtype=torch.float64)  # causal: self-attention, S = L
    v = torch.randn(2, L, Ev, generator=g, dtype=torch.float64)
    similarity = (elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)).tril()  # causal: j <= i
    expected = similarity @ v / (similarity.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v, is_causal=True, chunk_size=chunk), expected)


def test_linear_attention_cost_is_linear_in_length():
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(10)
    flops = []
    for L in (256, 512):
        q, k, v = (torch.randn(1, L, 8, generator=g) for _ in range(3))
        with FlopCounterMode(display=False) as counter:
            linear_attention(q, k, v)
        flops.append(counter.get_total_flops())
    assert flops[1] == 2 * flops[0]  # twice the tokens, twice the work (softmax attention: 4x)


# ----- MemoryTracker --------------------------------------------------------------------------


def test_memory_tracker_counts_live_tensors_exactly():
    with MemoryTracker() as tracker:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 alive
        del a  # 4000
        c = b.exp()  # 8000 again
        d = torch.ones(10, dtype=torch.float64)  # 8080: the peak
        del b, d
    assert tracker.peak == 8080 and tracker.current == 4000
    assert tracker.ops[:2] == ["ones", "mul"] and "exp" in tracker.ops
    del c
    assert tracker.current == 0


def test_memory_tracker_sees_the_naive_weights():
    g = torch.Generator().manual_seed(11)
    L, S = 300, 200
    q, k, v = torch.randn(L, 8, generator=g), torch.randn(S, 8, generator=g), torch.randn(S, 8, generator=g)
    with MemoryTracker() as tracker:
        out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert tracker.peak >= weights.nbytes == L * S * 4  # the (L, S) weights, plus softmax's temporaries
    assert tracker.current == out.nbytes + weights.nbytes  # only the results are still alive
    del out, weights
    assert tracker.current == 0


def test_memory_tracker_ignores_views_and_in_place_updates():
    x = torch.randn(100, 100)
    with MemoryTracker() as tracker:
        y = x.view(10_000)
        z = x.T
        x.mul_(2.0)
        w = y[:50]
    assert tracker.peak == 0 and tracker.current == 0
    with MemoryTracker() as tracker:
        a = torch.empty(1000)
        b = a.view(10, 100)  # shares a's storage
        del a
        assert tracker.current == 4000  # b keeps the storage alive
        del b
    assert tracker.current == 0 and tracker.peak == 4000
    del y, z, w


# ----- bad inputs -----------------------------------------------------------------------------

_q, _k, _v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)

BAD = [
    (lambda: tiled_attention([[1.0]], _k, _v), TypeError, "query"),
    (lambda: tiled_attention(_q, torch.randn(2, 5, 3), _v), ValueError, "key"),
    (lambda: tiled_attention(_q, _k, torch.randn(2, 4, 6)), ValueError, "value"),
    (lambda: tiled_attention(_q, _k, _v.double()), TypeError, "dtype"),
    (lambda: tiled_attention(_q, _k, _v, block_size=0), ValueError, "block_size"),
    (lambda: tiled_attention(_q, _k, _v, block_size=2.5), TypeError, "block_size"),
    (lambda: tiled_attention(_q, _k, _v, scale="big"), TypeError, "scale"),
    (lambda: tiled_attention(_q, _k, _v, attn_mask=torch.ones(3, 5, dtype=torch.bool), is_causal=True),
     ValueError, "attn_mask"),
    (lambda: tiled_attention(_q, _k, _v, attn_mask=torch.ones(4, 5, dtype=torch.bool)), ValueError, "attn_mask"),
    (lambda: tiled_attention(_q, _k, _v, attn_mask=torch.ones(3, 5, dtype=torch.int64)), TypeError, "attn_mask"),
    (lambda: tiled_attention(torch.randn(3, 3, 4), _k, _v), ValueError, "batch dims"),
    (lambda: online_softmax(torch.tensor([1, 2, 3])), TypeError, "x"),
    (lambda: online_softmax(torch.randn(3, 4), dim=2), ValueError, "dim"),
    (lambda: online_softmax(torch.randn(3, 4), dim=0.5), TypeError, "dim"),
    (lambda: online_softmax(torch.randn(3, 4), block_size=0), ValueError, "block_size"),
    (lambda: online_softmax(torch.tensor(1.0)), ValueError, "x"),
    (lambda: sliding_window_mask(0, 2), ValueError, "L"),
    (lambda: sliding_window_mask(4, 0), ValueError, "window"),
    (lambda: sliding_window_mask(4, 2, S=-1), ValueError, "S"),
    (lambda: sliding_window_mask(4.0, 2), TypeError, "L"),
    (lambda: sliding_window_mask(4, 2, causal="yes"), TypeError, "causal"),
    (lambda: KVCache(max_length=0), ValueError, "max_length"),
    (lambda: KVCache().append(torch.zeros(2, 4), torch.zeros(3, 4)), ValueError, "value"),
    (lambda: KVCache().append(torch.zeros(2, 4), torch.zeros(2, 4).double()), TypeError, "dtype"),
    (lambda: KVCache().append(torch.zeros(4), torch.zeros(4)), ValueError, "key"),
    (lambda: decode_step(_q, _k[:, :3], _v[:, :3], cache={}), TypeError, "cache"),
    (lambda: decode_step(_q, _k, _v, KVCache()), ValueError, "query"),
    (lambda: linear_attention(_q, _k, _v, is_causal=True), ValueError, "is_causal"),
    (lambda: linear_attention(_q, _k, _v, feature_map="elu"), TypeError, "feature_map"),
    (lambda: linear_attention(_q, _k, _v, chunk_size=0), ValueError, "chunk_size"),
    (lambda: elu_feature_map([1.0]), TypeError, "x"),
]


@pytest.mark.parametrize("call, error, name", BAD, ids=[f"{i}-{n}" for i, (_, _, n) in enumerate(BAD)])
def test_bad_inputs_raise_clear_errors(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_cache_rejects_a_token_of_another_shape():
    cache = KVCache()
    cache.append(torch.zeros(2, 3, 1, 4), torch.zeros(2, 3, 1, 5))
    with pytest.raises(ValueError, match="sequence dim"):
        cache.append(torch.zeros(2, 3, 1, 8), torch.zeros(2, 3, 1, 5))
    with pytest.raises(ValueError, match="sequence dim"):
        cache.append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 5))
    with pytest.raises(TypeError, match="dtype"):
        cache.append(torch.zeros(2, 3, 1, 4).double(), torch.zeros(2, 3, 1, 5).double())


def test_public_names():
    assert set(efficient.__all__) == {"online_softmax", "flash_attention", "tiled_attention", "KVCache", "decode_step",
                                      "sliding_window_mask", "elu_feature_map", "linear_attention", "MemoryTracker",
                                      "median_time", "loglog_slope", "strided_mask", "fixed_mask", "global_local_mask"}
    for name in efficient.__all__:
        doc = getattr(efficient, name).__doc__
        assert "Taught in: notebooks/09_efficient_attention.ipynb" in doc, name
    assert math.isclose(0.25 * math.log(torch.finfo(torch.float32).max), 22.18, abs_tol=0.01)  # the bound in the doc
