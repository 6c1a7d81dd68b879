"""T5's bucketed relative position bias against Hugging Face transformers' own T5Attention (random weights)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.positional import T5RelativePositionBias, t5_relative_position_bucket

modeling_t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
T5Config = pytest.importorskip("transformers").T5Config

SIZES = [(32, 128), (8, 20), (16, 64), (64, 512), (4, 3), (10, 11)]


@pytest.mark.parametrize("num_buckets, max_distance", SIZES)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_buckets_equal_transformers(num_buckets, max_distance, bidirectional):
    relative = torch.arange(-3 * max_distance - 7, 3 * max_distance + 8)  # every offset, past max_distance both ways
    ours = t5_relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    ref = modeling_t5.T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, ref.long())
    assert ours.min() >= 0 and ours.max() < num_buckets


@settings(max_examples=80, deadline=None)
@given(st.integers(4, 130), st.integers(1, 600), st.booleans(), st.data())
def test_buckets_equal_transformers_for_random_sizes(num_buckets, extra_distance, bidirectional, data):
    half = num_buckets // 2 if bidirectional else num_buckets  # buckets for one side (>= 2)
    exact = half // 2  # distances with a bucket of their own (>= 1)
    max_distance = exact + extra_distance  # the scheme needs max_distance > exact
    reach = data.draw(st.integers(1, 3 * max_distance + 10))
    relative = torch.arange(-reach, reach + 1)  # every offset, both sides, often past max_distance
    ours = t5_relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    ref = modeling_t5.T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, ref.long())
    assert ours.min() >= 0 and ours.max() < num_buckets
    before = ours[: reach + 1].flip(0)  # offsets 0, -1, -2, ...: distance d = 0, 1, 2, ... before the query
    assert torch.equal(before[: min(exact, reach + 1)], torch.arange(min(exact, reach + 1)))  # exact near
    assert (before.diff() >= 0).all()  # never a smaller bucket farther away


def test_bucket_structure_is_exact_near_and_logarithmic_far():
    b = t5_relative_position_bucket(torch.arange(-200, 201), True, 32, 128)  # offsets -200 .. 200
    at = lambda d: int(b[d + 200])  # noqa: E731
    assert [at(-d) for d in range(8)] == list(range(8))  # keys before: one bucket per distance 0..7
    assert [at(d) for d in range(1, 8)] == list(range(17, 24))  # keys after: the upper half
    # Far: bucket 8 + floor(log(d / 8) / log(128 / 8) * 8); it reaches 15 at d = 8 * 16^(7/8) = 90.5.
    assert at(-8) == 8 and at(-11) == 8 and at(-12) == 9  # 8 * 16^(1/8) = 11.3
    assert at(-90) == 14 and at(-91) == 15 and at(-128) == 15 and at(-1000 // 5) == 15
    assert at(91) == 31 and at(200) == 31
    steps = b[200:].diff()
    assert (steps >= 0).all()  # monotone in the distance
    causal = t5_relative_position_bucket(torch.arange(-5, 6), False, 32, 128)
    assert causal[5:].eq(0).all() and causal[:5].tolist() == [5, 4, 3, 2, 1]  # later keys share bucket 0


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("L, S, offset", [(7, 7, 0), (5, 300, 0), (1, 40, 39), (30, 9, 0)])
def test_bias_equals_t5_compute_bias(bidirectional, L, S, offset):
    config = T5Config(d_model=16, d_kv=4, num_heads=4, relative_attention_num_buckets=16,
                      relative_attention_max_distance=50, is_decoder=not bidirectional)
    torch.manual_seed(0)
    ref = modeling_t5.T5Attention(config, has_relative_attention_bias=True)
    ref.is_decoder = not bidirectional
    ours = T5RelativePositionBias(num_heads=4, num_buckets=16, max_distance=50, bidirectional=bidirectional)
    ours.relative_attention_bias.weight.data.copy_(ref.relative_attention_bias.weight)
    expected = ref.compute_bias(L, S, past_seen_tokens=offset)[0]  # (1, H, L, S) -> (H, L, S)
    got = ours(L, S, query_offset=offset)
    assert got.shape == (4, L, S)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_bias_depends_on_the_offset_only_and_is_trainable():
    torch.manual_seed(1)
    module = T5RelativePositionBias(num_heads=3, num_buckets=8, max_distance=16)
    bias = module(6, 9)  # (H, L, S)
    for i in range(5):
        for j in range(8):
            assert torch.equal(bias[:, i, j], bias[:, i + 1, j + 1])  # the same offset j - i
    bias.sum().backward()
    assert module.relative_attention_bias.weight.grad.abs().sum() > 0


def test_meta_device_shapes():
    module = T5RelativePositionBias(num_heads=2).to("meta")
    out = module(4, 6)
    assert out.shape == (2, 4, 6) and out.device.type == "meta"


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: t5_relative_position_bucket(torch.zeros(3), True, 32, 128), TypeError, ["relative_position", "float32"]),
        (lambda: t5_relative_position_bucket([1, 2], True, 32, 128), TypeError, ["relative_position", "list"]),
        (lambda: t5_relative_position_bucket(torch.zeros(3, dtype=torch.long), 1, 32, 128), TypeError, ["bidirectional"]),
        (lambda: t5_relative_position_bucket(torch.zeros(3, dtype=torch.long), True, 2, 128), ValueError, ["num_buckets"]),
        (lambda: t5_relative_position_bucket(torch.zeros(3, dtype=torch.long), True, 32, 8), ValueError, ["max_distance"]),
        (lambda: T5RelativePositionBias(0), ValueError, ["num_heads"]),
        (lambda: T5RelativePositionBias(2, num_buckets=3), ValueError, ["num_buckets"]),
        (lambda: T5RelativePositionBias(2)(0), ValueError, ["L"]),
        (lambda: T5RelativePositionBias(2)(3, query_offset=-1), ValueError, ["query_offset"]),
        (lambda: T5RelativePositionBias(2)(3, query_offset=1.0), TypeError, ["query_offset"]),
    ],
)
def test_bad_input_errors_name_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
