"""Checks for chapter 07: positional encoding (sinusoidal table, RoPE, ALiBi slopes).

Taught in: solutions/ and exercises/ 07_positional_encoding.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..positional import alibi_slopes as _alibi_slopes
from ..positional import apply_rope as _apply_rope
from ..positional import sinusoidal_encoding as _sinusoidal
from .core import Case, CheckReport, Exercise, Mistake, Property, _difference, _gen, _randn, run_check
from .questions import exact_compare, prediction, run_question

__all__ = ["check_sinusoidal_encoding", "check_apply_rope", "check_alibi_slopes", "check_predict_rope_depends_on",
           "check_find_similarity_halving_offset"]


def _compare(keep_dtype: bool):
    """Like core's comparison, with a tolerance of 2e-4 for values (angles computed in float32 are
    fine: pos * frequency loses about 1e-5 at a few hundred positions) and, if ``keep_dtype``, a
    check that the result has the input's dtype."""

    def compare(got, expected):
        if keep_dtype and isinstance(got, torch.Tensor) and got.is_floating_point() and got.dtype != expected.dtype:
            return f"returned dtype {got.dtype}, expected {expected.dtype} (return the input's dtype)"
        if not keep_dtype and isinstance(got, torch.Tensor) and got.is_floating_point() \
                and isinstance(expected, torch.Tensor) and expected.is_floating_point():
            expected = expected.to(got.dtype)  # any floating dtype will do here (core's comparison checks it)
        reason = _difference(got, expected)
        if reason is not None and reason.startswith("values differ"):
            if torch.allclose(got.detach().double(), expected.detach().double(), rtol=1e-4, atol=2e-4):
                return None
        return reason

    return compare


# --------------------------------------------------------------------------------------------
# Exercise 1: the sinusoidal table.
# --------------------------------------------------------------------------------------------


def _sinusoidal_variant(*, swap=False, exponent="2i", transpose=False):
    """A wrong (or right) sinusoidal table: which function on which column, which frequency exponent."""

    def fn(num_positions, embed_dim):
        P, D = num_positions, embed_dim
        pos = torch.arange(P, dtype=torch.float64)[:, None]  # (P, 1)
        pair = torch.arange(D // 2, dtype=torch.float64)[None, :]  # (1, D/2): i
        power = {"2i": 2 * pair / D, "i": pair / D}[exponent]
        angle = pos / 10000.0 ** power  # (P, D/2)
        first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
        pe = torch.stack((first(angle), second(angle)), dim=-1).flatten(-2).float()  # (P, D/2, 2) -> (P, D)
        return pe.T if transpose else pe

    return fn


def _sinusoidal_odd_frequency(num_positions, embed_dim):
    """Frequency from the column index j (base^(j/D)) instead of the pair index: cos columns off by one step."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    col = torch.arange(embed_dim, dtype=torch.float64)[None, :]  # (1, D): j
    angle = pos / 10000.0 ** (col / embed_dim)  # (P, D), cos columns use (2i+1)/D
    pe = torch.where(col.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return pe.float()


def check_sinusoidal_encoding(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``sinusoidal_encoding(num_positions, embed_dim)`` -> (P, D), even D, float32.

    PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(pos / 10000^(2i/D)).
    Taught in: notebooks/07_positional_encoding.ipynb.
    """
    ex = Exercise(
        "sinusoidal_encoding",
        lambda num_positions, embed_dim: _sinusoidal(num_positions, embed_dim),
        [
            Property("a small table, P = 3 positions, D = 4: row 0 is [0, 1, 0, 1]",
                     [Case((3, 4)), Case((1, 2))]),
            Property("tables with P != D (rows are positions, columns are features)",
                     [Case((6, 8)), Case((10, 4)), Case((5, 16))]),
            Property("square tables, P = D", [Case((8, 8)), Case((12, 12))]),
            Property("a long table, P = 200, D = 64 (slow and fast columns)", [Case((200, 64))]),
        ],
        [
            Mistake("sin_cos_swapped", "You put cos on the even columns and sin on the odd ones; the paper has "
                    "PE[pos, 2i] = sin(...) and PE[pos, 2i+1] = cos(...), so row 0 is [0, 1, 0, 1, ...].",
                    _sinusoidal_variant(swap=True)),
            Mistake("wrong_frequency_exponent", "Your frequencies use 10000^(i/D) with i the pair index; the exponent "
                    "is 2i/D (the column index of the pair's sine column, over D), so the wavelengths reach "
                    "2 pi * 10000 at the last pair, not 2 pi * 100.", _sinusoidal_variant(exponent="i")),
            Mistake("cos_frequency_shifted", "Your cos columns use 10000^((2i+1)/D): both columns of a pair must "
                    "share one frequency, 10000^(2i/D), so that a shift in position is a rotation of the pair.",
                    _sinusoidal_odd_frequency),
            Mistake("positions_and_dims_swapped", "Your table is (D, P): rows must be positions and columns "
                    "features, so that PE[pos] is the vector added to the token at position pos.",
                    _sinusoidal_variant(transpose=True)),
        ],
        compare=_compare(keep_dtype=False),
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: rotary position embedding.
# --------------------------------------------------------------------------------------------


def _rope_variant(*, sign=1.0, halves=False, exponent="2i", ignore_positions=False):
    """A wrong (or right) RoPE: rotation direction, pairing convention, frequency exponent, positions."""

    def fn(x, positions):
        E, T = x.shape[-1], x.shape[-2]
        pos = torch.arange(T) if ignore_positions else positions
        idx = torch.arange(E // 2, dtype=torch.float64)
        theta = 10000.0 ** (-{"2i": 2 * idx / E, "i": idx / E}[exponent])  # (E/2,)
        angle = sign * pos.double()[:, None] * theta[None, :]  # (T, E/2)
        cos, sin = torch.cos(angle), torch.sin(angle)
        xd = x.double()
        if halves:  # GPT-NeoX / Hugging Face rotate_half: pairs (i, i + E/2)
            a, b = xd[..., : E // 2], xd[..., E // 2:]
            out = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)
        else:
            a, b = xd[..., 0::2], xd[..., 1::2]
            out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
        return out.to(x.dtype)

    return fn


def check_apply_rope(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``apply_rope(x, positions)``: x (..., T, E), positions (T,) -> (..., T, E).

    Pairs (x[2i], x[2i+1]) rotated by the angle pos * 10000^(-2i/E).
    Taught in: notebooks/07_positional_encoding.ipynb.
    """
    g = _gen(seed)

    def pos(*values):
        return torch.tensor(values, dtype=torch.long)

    ex = Exercise(
        "apply_rope",
        lambda x, positions: _apply_rope(x, positions),
        [
            Property("position 0 leaves x unchanged; position 1 rotates x = [1, 0] to [cos 1, sin 1]",
                     [Case((torch.tensor([[1.0, 0.0], [1.0, 0.0]]), pos(0, 1))),
                      Case((_randn(g, 1, 6), pos(0)))]),
            Property("a (T, E) input at positions 0 .. T-1",
                     [Case((_randn(g, 4, 8), pos(0, 1, 2, 3))), Case((_randn(g, 3, 2), pos(0, 1, 2)))]),
            Property("arbitrary positions, e.g. [7, 3, 100, 0] (use the given positions, not 0 .. T-1)",
                     [Case((_randn(g, 4, 6), pos(7, 3, 100, 0))), Case((_randn(g, 5, 16), pos(12, 13, 14, 15, 16)))]),
            Property("leading batch dims: (B, T, E), (B, H, T, E) and three leading dims",
                     [Case((_randn(g, 2, 3, 8), pos(0, 1, 2))), Case((_randn(g, 2, 2, 4, 4), pos(5, 6, 7, 8))),
                      Case((_randn(g, 2, 2, 2, 3, 6), pos(0, 4, 9)))]),
            Property("float64 in, float64 out", [Case((_randn(g, 3, 10, dtype=torch.float64), pos(1, 50, 500)))]),
        ],
        [
            Mistake("rotation_direction_flipped", "You rotate by -angle (clockwise): with out[2i] = x[2i] cos + "
                    "x[2i+1] sin you rotate the wrong way. RoFormer rotates counter-clockwise: out[2i] = x[2i] cos - "
                    "x[2i+1] sin, out[2i+1] = x[2i] sin + x[2i+1] cos.", _rope_variant(sign=-1.0)),
            Mistake("rope_pairs_halves", "You paired feature i with feature i + E/2 (the GPT-NeoX / Hugging Face "
                    "LLaMA `rotate_half` convention). That is a valid convention in those codebases (the same idea "
                    "on permuted features), but this exercise follows RoFormer and Meta's original LLaMA code: "
                    "rotate consecutive pairs (x[2i], x[2i+1]), e.g. x[..., 0::2] and x[..., 1::2].",
                    _rope_variant(halves=True)),
            Mistake("rope_frequency_exponent", "Your angles use 10000^(-i/E) with i the pair index; the frequency "
                    "of pair i is theta_i = 10000^(-2i/E).", _rope_variant(exponent="i")),
            Mistake("positions_ignored", "You rotated by 0, 1, ..., T-1 instead of the given `positions`; use the "
                    "positions argument (tokens may sit at any positions, e.g. after a cached prefix).",
                    _rope_variant(ignore_positions=True)),
        ],
        compare=_compare(keep_dtype=True),
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: ALiBi slopes.
# --------------------------------------------------------------------------------------------


def _slopes(num_heads, start=1):
    h = torch.arange(start, start + num_heads, dtype=torch.float64)
    return (2.0 ** (-8.0 * h / num_heads)).float()


def check_alibi_slopes(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``alibi_slopes(num_heads)`` -> (H,) for H a power of 2: m_h = 2^(-8(h+1)/H), h = 0 .. H-1.

    Taught in: notebooks/07_positional_encoding.ipynb.
    """
    ex = Exercise(
        "alibi_slopes",
        lambda num_heads: _alibi_slopes(num_heads),
        [
            Property("H = 8: the paper's slopes 1/2, 1/4, ..., 1/256", [Case((8,))]),
            Property("H = 2 and 4", [Case((2,)), Case((4,))]),
            Property("H = 16 and 32 (start and ratio 2^(-8/H))", [Case((16,)), Case((32,))]),
            Property("a single head: H = 1 gives [1/256]", [Case((1,))]),
        ],
        [
            Mistake("slopes_reversed", "Your slopes are in reverse order: head 0 has the steepest slope, "
                    "2^(-8/H) (1/2 for H = 8), and they shrink to 2^(-8) = 1/256 at the last head.",
                    lambda num_heads: _slopes(num_heads).flip(0)),
            Mistake("slopes_start_at_one", "Your first slope is 2^0 = 1: the exponent is -8(h+1)/H for h = 0 .. H-1, "
                    "so the slopes run from 2^(-8/H) down to 2^(-8), and no head gets slope 1.",
                    lambda num_heads: _slopes(num_heads, start=0)),
            Mistake("slopes_exponent_sign", "Your slopes are larger than 1: the exponent is negative, "
                    "m_h = 2^(-8(h+1)/H).", lambda num_heads: (1.0 / _slopes(num_heads))),
        ],
        compare=_compare(keep_dtype=False),
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: what the RoPE score depends on.
# --------------------------------------------------------------------------------------------

ROPE_OPTIONS = {"a": "m, the query's position", "b": "n, the key's position", "c": "m - n, their offset",
                "d": "m + n", "e": "m and n, each on its own"}


def _rope_score(q: torch.Tensor, k: torch.Tensor, m: int, n: int) -> float:
    rq = _apply_rope(q[None], torch.tensor([m]))[0]  # (E,)
    rk = _apply_rope(k[None], torch.tensor([n]))[0]  # (E,)
    return float(rq @ rk)


def _rope_dependence() -> str:
    """The option that course_lib's RoPE satisfies, measured: scores of shifted and swapped position pairs."""
    g = _gen(3)
    q, k = _randn(g, 8, dtype=torch.float64), _randn(g, 8, dtype=torch.float64)
    s = _rope_score(q, k, 5, 2)
    same_offset = abs(_rope_score(q, k, 9, 6) - s) < 1e-9  # both moved by 4
    same_sum = abs(_rope_score(q, k, 4, 3) - s) < 1e-9  # m + n kept
    same_query = abs(_rope_score(q, k, 5, 0) - s) < 1e-9  # m kept
    same_key = abs(_rope_score(q, k, 0, 2) - s) < 1e-9  # n kept
    return "c" if same_offset else "d" if same_sum else "a" if same_query else "b" if same_key else "e"


def check_predict_rope_depends_on(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_rope_depends_on()``: with RoPE, the score between a query at position m and a key at
    position n depends on the positions only through (a) m, (b) n, (c) m - n, (d) m + n, or (e) m and n each
    on its own; the learner returns a letter.

    Passes on the option measured on course_lib's apply_rope ("c"); names the common wrong options; explains.
    Taught in: notebooks/07_positional_encoding.ipynb.
    """
    answer = _rope_dependence()
    return prediction(
        "predict_rope_depends_on", answer, "the RoPE score depends on the positions through (a letter)",
        [("query_position", "(a): rotating the query alone would make the score depend on m, but the key is rotated "
          "too, by its own angle; what is left is the angle between them.", "a"),
         ("key_position", "(b): the key's rotation alone does not decide the score: the query is rotated too.", "b"),
         ("sum", "(d): the two rotations do not add up: the score is q rotated by m dotted with k rotated by n, "
          "which is q dotted with k rotated by n - m. Only the difference is left.", "d"),
         ("absolute", "(e) is what *absolute* encodings (sinusoidal, learned) give: added to the tokens, they "
          "leave terms that depend on m and n separately. RoPE rotates instead, and keeps only the offset.", "e")],
        fn, device,
        why="RoPE rotates q by the angle m * theta and k by n * theta; a dot product of two rotated vectors "
            "depends only on the angle between the rotations, (m - n) * theta. Moving both tokens by the same "
            "amount leaves every score unchanged: the encoding is relative.",
        compare=exact_compare("option letter"))


# --------------------------------------------------------------------------------------------
# Investigation: how far apart are two positions whose sinusoidal encodings are half as similar?
# --------------------------------------------------------------------------------------------


def _halving_offset(d_model: int, base: float, shift: int = 0, ignore_base: bool = False) -> int | None:
    """The smallest k >= 1 with PE(0) . PE(k) < PE(0) . PE(0) / 2 (course_lib's encoding), up to 1024."""
    pe = _sinusoidal(1025, d_model, base=10000.0 if ignore_base else base, dtype=torch.float64)  # (P, D)
    dots = pe @ pe[0]  # (P,)
    below = (dots[1:] < dots[0] / 2).nonzero()
    return None if below.numel() == 0 else int(below[0]) + 1 - shift


def check_find_similarity_halving_offset(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_similarity_halving_offset(d_model, base)`` -> the smallest offset k >= 1 at which the dot
    product of the sinusoidal encodings of positions 0 and k falls below half of position 0's with itself.

    d_model: even int; base: float (the encoding's base, 10000 in the paper). Returns an int (found by
    experiment: compute the encodings, scan k). Exact answer required.
    Taught in: notebooks/07_positional_encoding.ipynb.
    """
    ex = Exercise(
        "find_similarity_halving_offset",
        _halving_offset,
        [
            Property("the paper's base 10000, d_model = 64", [Case((64, 10000.0))]),
            Property("a wider model, d_model = 128", [Case((128, 10000.0))]),
            Property("another base (100), d_model = 16", [Case((16, 100.0))]),
        ],
        [
            Mistake("last_above_half", "You returned the last offset still *above* half: the question asks for the "
                    "first offset below it (one more).", lambda d, b: _halving_offset(d, b, shift=1)),
            Mistake("base_ignored", "You used base 10000 whatever the argument: the frequencies are "
                    "1 / base^(2i / d_model), so another base changes how fast the similarity falls.",
                    lambda d, b: _halving_offset(d, b, ignore_base=True)),
        ],
        compare=exact_compare("offset"),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="PE(m) . PE(n) = sum over frequencies of cos(w_i (m - n)): it depends only on the offset "
                            "and falls as the offset grows, so nearby positions look alike and far ones do not.")
