"""Chapter 07 checks: right answers pass, unfilled ones say so, each known mistake gets its own diagnosis."""

import math

import torch

from course_lib import checks

# Right answers, written independently of the references.


def good_sinusoidal(num_positions, embed_dim):
    # float32 throughout, as a learner would write it; the check must accept it
    pos = torch.arange(num_positions).float().unsqueeze(1)  # (P, 1)
    div = torch.exp(torch.arange(0, embed_dim, 2).float() * (-math.log(10000.0) / embed_dim))  # (D/2,)
    pe = torch.zeros(num_positions, embed_dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def good_rope(x, positions):
    # complex-number form (Meta's LLaMA reference style), angles in float32
    E = x.shape[-1]
    freqs = 1.0 / (10000.0 ** (torch.arange(0, E, 2, device=x.device).float() / E))  # (E/2,)
    angles = torch.outer(positions.float(), freqs)  # (T, E/2)
    rot = torch.polar(torch.ones_like(angles), angles)  # (T, E/2) complex
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], E // 2, 2).contiguous())
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)


def good_slopes(num_heads):
    start = 2 ** (-8 / num_heads)
    return torch.tensor([start ** (h + 1) for h in range(num_heads)])


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_sinusoidal_encoding, good_sinusoidal),
    (checks.check_apply_rope, good_rope),
    (checks.check_alibi_slopes, good_slopes),
]


def test_a_float64_table_is_also_accepted():
    report = checks.check_sinusoidal_encoding(lambda P, D: good_sinusoidal(P, D).double(), )
    assert report.status == "passed"


# Buggy implementations, each written out on its own.


def sin_cos_swapped(num_positions, embed_dim):
    pe = good_sinusoidal(num_positions, embed_dim)
    return pe.view(num_positions, embed_dim // 2, 2).flip(-1).reshape(num_positions, embed_dim)


def wrong_frequency_exponent(num_positions, embed_dim):
    pe = torch.zeros(num_positions, embed_dim)
    for pos in range(num_positions):
        for i in range(embed_dim // 2):
            angle = pos / 10000.0 ** (i / embed_dim)  # i / D instead of 2i / D
            pe[pos, 2 * i], pe[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return pe


def cos_frequency_shifted(num_positions, embed_dim):
    pe = torch.zeros(num_positions, embed_dim)
    for pos in range(num_positions):
        for j in range(embed_dim):
            angle = pos / 10000.0 ** (j / embed_dim)  # the column index j for both sin and cos columns
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def positions_and_dims_swapped(num_positions, embed_dim):
    return good_sinusoidal(num_positions, embed_dim).T


def rope_rotated_backwards(x, positions):
    return good_rope(x, -positions)


def rope_rotate_half(x, positions):
    # the GPT-NeoX / Hugging Face convention: pairs (i, i + E/2)
    E = x.shape[-1]
    freqs = 1.0 / (10000.0 ** (torch.arange(0, E, 2, device=x.device).float() / E))
    angles = torch.outer(positions.float(), freqs)  # (T, E/2)
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)  # (T, E)
    x1, x2 = x[..., : E // 2], x[..., E // 2:]
    rotate_half = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotate_half * sin


def rope_frequency_exponent(x, positions):
    E = x.shape[-1]
    freqs = 1.0 / (10000.0 ** (torch.arange(E // 2, device=x.device).float() / E))  # i / E instead of 2i / E
    angles = torch.outer(positions.float(), freqs)
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], E // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)


def rope_positions_ignored(x, positions):
    return good_rope(x, torch.arange(x.shape[-2], device=x.device))


BUGGY = [
    (checks.check_sinusoidal_encoding, sin_cos_swapped, "sin_cos_swapped"),
    (checks.check_sinusoidal_encoding, wrong_frequency_exponent, "wrong_frequency_exponent"),
    (checks.check_sinusoidal_encoding, cos_frequency_shifted, "cos_frequency_shifted"),
    (checks.check_sinusoidal_encoding, positions_and_dims_swapped, "positions_and_dims_swapped"),
    (checks.check_apply_rope, rope_rotated_backwards, "rotation_direction_flipped"),
    (checks.check_apply_rope, rope_rotate_half, "rope_pairs_halves"),
    (checks.check_apply_rope, rope_frequency_exponent, "rope_frequency_exponent"),
    (checks.check_apply_rope, rope_positions_ignored, "positions_ignored"),
    (checks.check_alibi_slopes, lambda num_heads: good_slopes(num_heads).flip(0), "slopes_reversed"),
    (checks.check_alibi_slopes, lambda num_heads: torch.tensor([2 ** (-8 * h / num_heads) for h in range(num_heads)]),
     "slopes_start_at_one"),
    (checks.check_alibi_slopes, lambda num_heads: torch.tensor([2 ** (8 * (h + 1) / num_heads) for h in range(num_heads)]),
     "slopes_exponent_sign"),
]


def test_rotate_half_message_says_it_is_a_valid_convention_elsewhere(capsys):
    checks.check_apply_rope(rope_rotate_half)
    out = capsys.readouterr().out
    assert "rotate_half" in out and "valid convention" in out and "(x[2i], x[2i+1])" in out


def test_rope_that_loses_the_dtype_fails_the_dtype_property(capsys):
    report = checks.check_apply_rope(lambda x, positions: good_rope(x, positions).float())
    assert report.status == "failed"
    failed = [r for r in report.results if not r.passed]
    assert [r.title for r in failed] == ["float64 in, float64 out"] and "dtype" in failed[0].detail


def test_the_checks_are_registered_for_the_grader():
    from course_lib.checks import positional

    assert positional in checks.CHAPTER_MODULES
    assert set(positional.__all__) == {"check_sinusoidal_encoding", "check_apply_rope", "check_alibi_slopes",
                                       "check_predict_rope_depends_on", "check_find_similarity_halving_offset"}
