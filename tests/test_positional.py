"""course_lib.positional against the papers' formulas, written out independently here."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.attention import scaled_dot_product_attention
from course_lib.masking import causal_mask, to_additive
from course_lib.positional import LearnedPositionalEmbedding, alibi_bias, alibi_slopes, apply_rope, sinusoidal_encoding

SETTINGS = settings(max_examples=40, deadline=None)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ----- sinusoidal_encoding --------------------------------------------------------------------


def loop_sinusoidal(P, D, base=10000.0):
    """Vaswani et al. 2017, sec. 3.5, one entry at a time with Python's math module."""
    pe = [[0.0] * D for _ in range(P)]
    for pos in range(P):
        for col in range(D):
            two_i = col - (col % 2)  # 2i for both columns of pair i
            angle = pos / base ** (two_i / D)
            pe[pos][col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return torch.tensor(pe, dtype=torch.float64)


@pytest.mark.parametrize("P, D, base", [(1, 2, 10000.0), (7, 4, 10000.0), (50, 16, 10000.0), (9, 6, 100.0),
                                        (5, 7, 10000.0), (3, 1, 10000.0), (200, 33, 500.0)])
def test_sinusoidal_matches_the_formula_entry_by_entry(P, D, base):
    ours = sinusoidal_encoding(P, D, base=base, dtype=torch.float64)
    assert ours.shape == (P, D) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, loop_sinusoidal(P, D, base), rtol=0, atol=1e-12)


def test_sinusoidal_odd_embed_dim_last_column_is_a_sine():
    pe = sinusoidal_encoding(20, 5, dtype=torch.float64)
    pos = torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(pe[:, 4], torch.sin(pos / 10000.0 ** (4 / 5)))
    # the complete pairs are the same functions of pos as the even table would give at that D
    torch.testing.assert_close(pe[:, 0], torch.sin(pos))
    torch.testing.assert_close(pe[:, 1], torch.cos(pos))


def rotation_matrix(k, D, base=10000.0):
    """M_k: block-diagonal, one 2x2 rotation [[cos wk, sin wk], [-sin wk, cos wk]] per pair (sin, cos)."""
    M = torch.zeros(D, D, dtype=torch.float64)
    for i in range(D // 2):
        w = base ** (-2 * i / D)
        c, s = math.cos(w * k), math.sin(w * k)
        M[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return M


@pytest.mark.parametrize("D", [2, 8, 64])
@pytest.mark.parametrize("k", [1, 3, 17])
def test_sinusoidal_shift_is_a_fixed_rotation(D, k):
    pe = sinusoidal_encoding(120, D, dtype=torch.float64)
    M = rotation_matrix(k, D)
    for pos in (0, 5, 40, 100):
        torch.testing.assert_close(M @ pe[pos], pe[pos + k], rtol=0, atol=1e-10)  # (D, D) @ (D,) -> (D,)
    torch.testing.assert_close(M @ M.T, torch.eye(D, dtype=torch.float64))  # a rotation: orthogonal
    assert not torch.allclose(M, torch.eye(D, dtype=torch.float64))  # and not the identity


def test_sinusoidal_dot_product_depends_on_the_offset_only():
    D = 32
    pe = sinusoidal_encoding(300, D, dtype=torch.float64)
    for k in (0, 1, 7, 50):
        dots = torch.stack([pe[p] @ pe[p + k] for p in (0, 13, 100, 240)])
        w = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        torch.testing.assert_close(dots, torch.cos(w * k).sum().expand(4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_sinusoidal_dtype_and_precision_at_large_positions(dtype):
    pe = sinusoidal_encoding(5000, 8, dtype=dtype)
    assert pe.dtype == dtype and pe.device.type == "cpu"
    exact = loop_sinusoidal(5000, 8)[4000:4010]
    tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-7, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(pe[4000:4010].double(), exact, rtol=0, atol=tol)  # angles not computed in dtype


# ----- apply_rope -----------------------------------------------------------------------------


def complex_rope(x, positions, base=10000.0):
    """RoPE as complex multiplication (Meta's LLaMA reference style), in float64."""
    E = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], E // 2, 2).contiguous())  # (..., T, E/2)
    freqs = 1.0 / base ** (torch.arange(0, E, 2, dtype=torch.float64) / E)  # (E/2,)
    rot = torch.polar(torch.ones(len(positions), E // 2, dtype=torch.float64),
                      positions.double()[:, None] * freqs[None, :])  # (T, E/2) unit complex numbers
    return torch.view_as_real(z * rot).flatten(-2)  # (..., T, E/2, 2) -> (..., T, E)


@st.composite
def rope_inputs(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    T = draw(st.integers(1, 9))
    E = 2 * draw(st.integers(1, 8))
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(*batch, T, E, generator=g, dtype=torch.float64)
    positions = torch.randint(0, 2000, (T,), generator=g)
    return x, positions


@SETTINGS
@given(rope_inputs())
def test_rope_matches_a_complex_number_reference(inputs):
    x, positions = inputs
    torch.testing.assert_close(apply_rope(x, positions), complex_rope(x, positions), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(rope_inputs())
def test_rope_preserves_norms_and_is_the_identity_at_position_zero(inputs):
    x, positions = inputs
    out = apply_rope(x, positions)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # every pair keeps its own length too (a rotation of each 2-D plane)
    torch.testing.assert_close(out.unflatten(-1, (-1, 2)).norm(dim=-1), x.unflatten(-1, (-1, 2)).norm(dim=-1))
    zero = torch.zeros_like(positions)
    assert torch.equal(apply_rope(x, zero), x)
    torch.testing.assert_close(apply_rope(x)[..., :1, :], x[..., :1, :])  # default positions start at 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_rope_scores_depend_on_the_offset_only(half_e, seed):
    g = _gen(seed)
    E = 2 * half_e
    q, k = torch.randn(E, generator=g, dtype=torch.float64), torch.randn(E, generator=g, dtype=torch.float64)
    m, n = torch.randint(0, 500, (2,), generator=g).tolist()
    shift = int(torch.randint(1, 1000, (1,), generator=g))

    def score(a, b):
        qa = apply_rope(q[None, :], torch.tensor([a]))  # (1, E) at position a
        kb = apply_rope(k[None, :], torch.tensor([b]))  # (1, E) at position b
        return (qa @ kb.T).item()  # (1, E) @ (E, 1) -> (1, 1)

    assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(score(m, n), score(0, n - m), rel_tol=1e-9, abs_tol=1e-9)


def test_rope_actually_depends_on_the_offset():
    g = _gen(0)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    s = [(apply_rope(q, torch.tensor([0])) @ apply_rope(k, torch.tensor([d])).T).item() for d in range(4)]
    assert len({round(x, 4) for x in s}) == 4


def test_rope_default_positions_batched_heads_and_broadcast_positions():
    g = _gen(1)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)  # (B, H, T, E)
    ar = torch.arange(5)
    torch.testing.assert_close(apply_rope(x), complex_rope(x, ar))
    torch.testing.assert_close(apply_rope(x, [0, 1, 2, 3, 4]), apply_rope(x, ar))  # a list works too
    offsets = torch.tensor([[0], [10]])  # (B, 1) per-sequence offsets
    pos = (offsets + ar)[:, None, :]  # (B, 1, T)
    out = apply_rope(x, pos)
    torch.testing.assert_close(out[0], complex_rope(x[0], ar))
    torch.testing.assert_close(out[1], complex_rope(x[1], ar + 10))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_rope_keeps_dtype(dtype):
    g = _gen(2)
    x = torch.randn(2, 6, 8, generator=g)
    pos = torch.tensor([0, 1, 5, 100, 1000, 4095])
    out = apply_rope(x.to(dtype), pos)
    assert out.dtype == dtype and out.shape == x.shape
    tol = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-6, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(out.double(), complex_rope(x.to(dtype).double(), pos), rtol=tol, atol=tol)


def test_rope_real_positions_interpolate():
    g = _gen(3)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    half = apply_rope(x, torch.tensor([0.5, 1.5, 2.5, 3.5], dtype=torch.float64))
    twice = apply_rope(half, torch.tensor([0.5] * 4, dtype=torch.float64))
    torch.testing.assert_close(twice, apply_rope(x, torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)))


def test_rope_is_differentiable():
    g = _gen(4)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_rope(t, torch.tensor([2, 0, 7])), (x,))


# ----- alibi ----------------------------------------------------------------------------------


def reference_get_slopes(n):
    """The get_slopes function of github.com/ofirpress/attention_with_linear_biases, verbatim in spirit."""
    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + reference_get_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_for_eight_heads_are_the_papers():
    torch.testing.assert_close(alibi_slopes(8, dtype=torch.float64),
                               torch.tensor([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256], dtype=torch.float64))


@pytest.mark.parametrize("H", [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 32, 40])
def test_alibi_slopes_match_the_reference_code(H):
    ours = alibi_slopes(H, dtype=torch.float64)
    torch.testing.assert_close(ours, torch.tensor(reference_get_slopes(H), dtype=torch.float64), rtol=1e-12, atol=0)
    assert ours.shape == (H,) and (ours > 0).all() and (ours < 1).all()
    assert len(set(ours.tolist())) == H  # every head has its own slope
    if H & (H - 1) == 0:  # a power of 2: geometric, start = ratio = 2^(-8/H)
        ratio = 2 ** (-8 / H)
        torch.testing.assert_close(ours, ratio ** torch.arange(1, H + 1, dtype=torch.float64))


@pytest.mark.parametrize("H, L, S", [(1, 1, None), (4, 5, None), (8, 3, 7), (6, 6, 2)])
def test_alibi_bias_values(H, L, S):
    bias = alibi_bias(H, L, S, dtype=torch.float64)
    S_ = L if S is None else S
    assert bias.shape == (H, L, S_) and bias.dtype == torch.float64
    m = reference_get_slopes(H)
    for h in range(H):
        for i in range(L):
            for j in range(S_):
                expected = -m[h] * (i - j) if j <= i else 0.0
                assert math.isclose(bias[h, i, j].item(), expected, abs_tol=1e-15)
    assert not torch.signbit(bias[bias == 0]).any()  # zeros are +0.0


def test_alibi_bias_is_relative_and_row_equivalent_to_the_reference_form():
    H, L = 4, 9
    bias = alibi_bias(H, L, dtype=torch.float64)
    torch.testing.assert_close(bias[:, 1:, 1:], bias[:, :-1, :-1])  # depends on i - j only
    # the reference code adds +m j; the two differ by a constant per row, so softmax over j <= i agrees
    m = alibi_slopes(H, dtype=torch.float64)[:, None, None]
    ref = m * torch.arange(L, dtype=torch.float64)  # (H, 1, 1) * (L,) -> (H, 1, L)
    causal = to_additive(causal_mask(L), torch.float64)
    torch.testing.assert_close(torch.softmax(bias + causal, -1), torch.softmax(ref + causal, -1))


def test_alibi_bias_as_attn_mask_broadcasts_over_the_batch():
    g = _gen(5)
    B, H, L, E = 2, 4, 6, 8
    q, k, v = (torch.randn(B, H, L, E, generator=g, dtype=torch.float64) for _ in range(3))
    mask = alibi_bias(H, L, dtype=torch.float64) + to_additive(causal_mask(L), torch.float64)  # (H, L, L)
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)
    assert (w.triu(1) == 0).all()
    # with equal scores (zero queries) the weights fall by exp(-m_h) per step back in time
    _, w0 = scaled_dot_product_attention(torch.zeros_like(q), k, v, attn_mask=mask, return_weights=True)
    slopes = alibi_slopes(H, dtype=torch.float64)
    ratio = w0[:, :, L - 1, :-1] / w0[:, :, L - 1, 1:]  # (B, H, L-1): w[j] / w[j + 1]
    torch.testing.assert_close(ratio, torch.exp(-slopes)[None, :, None].expand_as(ratio))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_alibi_dtype(dtype):
    assert alibi_bias(8, 4, dtype=dtype).dtype == dtype
    assert alibi_slopes(8, dtype=dtype).dtype == dtype
    torch.testing.assert_close(alibi_bias(8, 4, dtype=dtype).double(), alibi_bias(8, 4, dtype=torch.float64),
                               rtol=1e-2, atol=1e-3)


# ----- LearnedPositionalEmbedding -------------------------------------------------------------


def test_learned_adds_its_rows_and_gradients_flow_to_the_used_rows_only():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(10, 6)
    assert sum(p.numel() for p in emb.parameters()) == 60
    assert abs(emb.pos_embedding.std().item() - 0.02) < 0.01
    x = torch.randn(3, 4, 6, requires_grad=True)  # (B, T, D), T = 4 < 10
    out = emb(x)
    torch.testing.assert_close(out, x + emb.pos_embedding[:4].unsqueeze(0))
    (out * torch.arange(1.0, 7.0)).sum().backward()
    grad = emb.pos_embedding.grad
    torch.testing.assert_close(grad[:4], 3 * torch.arange(1.0, 7.0).expand(4, 6))  # B = 3 sequences
    assert torch.equal(grad[4:], torch.zeros(6, 6))  # positions never seen get no gradient
    torch.testing.assert_close(x.grad, torch.arange(1.0, 7.0).expand(3, 4, 6))


def test_learned_works_without_a_batch_dim_and_keeps_dtype():
    emb = LearnedPositionalEmbedding(5, 4)
    for dtype in (torch.float16, torch.float64):
        x = torch.zeros(5, 4, dtype=dtype)
        out = emb(x)
        assert out.dtype == dtype
        torch.testing.assert_close(out, emb.pos_embedding.detach().to(dtype))
    emb.double()
    assert emb(torch.zeros(2, 3, 4, dtype=torch.float64)).dtype == torch.float64


# ----- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: sinusoidal_encoding(0, 8), ValueError, ["num_positions"]),
        (lambda: sinusoidal_encoding(4, 2.5), TypeError, ["embed_dim"]),
        (lambda: sinusoidal_encoding(4, 8, base=-1.0), ValueError, ["base"]),
        (lambda: sinusoidal_encoding(4, 8, dtype=torch.long), TypeError, ["dtype"]),
        (lambda: LearnedPositionalEmbedding(0, 8), ValueError, ["max_positions"]),
        (lambda: LearnedPositionalEmbedding(4, "8"), TypeError, ["embed_dim"]),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(2, 5, 8)), ValueError, ["T=5", "max_positions=4"]),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(2, 3, 6)), ValueError, ["embed_dim=8", "(2, 3, 6)"]),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(2, 3, 8, dtype=torch.long)), TypeError, ["x", "floating"]),
        (lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(8)), ValueError, ["x", "at least 2 dims"]),
        (lambda: apply_rope(torch.zeros(2, 3, 5)), ValueError, ["E", "even", "(2, 3, 5)"]),
        (lambda: apply_rope(torch.zeros(2, 3, 4), torch.arange(4)), ValueError, ["positions", "(4)", "(2, 3, 4)"]),
        (lambda: apply_rope(torch.zeros(2, 3, 4), torch.zeros(3, 3)), ValueError, ["positions", "(3, 3)"]),
        (lambda: apply_rope(torch.zeros(2, 3, 4), torch.ones(3, dtype=torch.bool)), TypeError, ["positions", "bool"]),
        (lambda: apply_rope(torch.zeros(2, 3, 4), "abc"), TypeError, ["positions", "str"]),
        (lambda: apply_rope(torch.zeros(3, 4), base=0.0), ValueError, ["base"]),
        (lambda: apply_rope(torch.zeros(3, 4, dtype=torch.long)), TypeError, ["x", "floating"]),
        (lambda: apply_rope([[1.0, 2.0]]), TypeError, ["x", "list"]),
        (lambda: alibi_bias(0, 4), ValueError, ["num_heads"]),
        (lambda: alibi_bias(4, -1), ValueError, ["L"]),
        (lambda: alibi_bias(4, 3, 2.0), TypeError, ["S"]),
        (lambda: alibi_bias(4, 3, dtype=torch.int32), TypeError, ["dtype"]),
        (lambda: alibi_slopes(True), TypeError, ["num_heads"]),
        (lambda: sinusoidal_encoding(4, 8, base="10000"), TypeError, ["base", "str"]),
        (lambda: sinusoidal_encoding(4, 8, device=1.5), TypeError, ["device", "float"]),
        (lambda: sinusoidal_encoding(4, 8, device="nowhere"), ValueError, ["device", "nowhere"]),
        (lambda: apply_rope(torch.zeros(3, 4), base=True), TypeError, ["base", "bool"]),
        (lambda: alibi_slopes(4, device=[0]), TypeError, ["device", "list"]),
        (lambda: alibi_bias(4, 3, device="nowhere"), ValueError, ["device", "nowhere"]),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
