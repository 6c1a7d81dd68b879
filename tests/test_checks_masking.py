"""course_lib.checks for chapter 04 (masking): right answers pass, each known mistake gets its own diagnosis."""

import math

import torch

from course_lib import checks

# Right answers, written independently of the references (index comparisons, einsum, by-hand softmax).


def good_causal(L):
    i = torch.arange(L)
    return i[:, None] >= i[None, :]  # (L, 1) >= (1, L) -> (L, L): key j <= query i


def good_padding(lengths, S):
    device = getattr(lengths, "device", None)
    return torch.stack([torch.arange(S, device=device) < int(n) for n in lengths])  # (B, S)


def _safe_softmax(s):
    """Softmax over the last dim that gives zeros on an all -inf row (computed in float32)."""
    s32 = s.float()
    allowed = torch.isfinite(s32)
    shifted = torch.where(allowed, s32 - s32.masked_fill(~allowed, -1e30).amax(-1, keepdim=True), -math.inf)
    e = shifted.exp()  # exp(-inf) = 0
    total = e.sum(-1, keepdim=True)
    return (e / total.clamp_min(1e-30)).to(s.dtype)


def good_masked_attention(query, key, value, mask):
    scores = torch.einsum("...le,...se->...ls", query, key) / query.shape[-1] ** 0.5
    scores = torch.where(mask, scores, torch.tensor(-math.inf, dtype=scores.dtype))
    return _safe_softmax(scores) @ value


def good_combine(causal, padding):
    return torch.logical_and(causal.unsqueeze(0), padding.unsqueeze(1))


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_make_causal_mask, good_causal),
    (checks.check_make_padding_mask, good_padding),
    (checks.check_masked_attention, good_masked_attention),
    (checks.check_combine, good_combine),
]


def test_the_exports():
    for name in ("check_make_causal_mask", "check_make_padding_mask", "check_masked_attention", "check_combine"):
        assert name in checks.__all__ and callable(getattr(checks, name))


def _scaled(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _positions(lengths, S):
    return torch.arange(S, device=lengths.device)[None, :], lengths[:, None]


BUGGY = [
    # (check, buggy implementation, the diagnosis it must trigger)
    (checks.check_make_causal_mask, lambda L: torch.ones(L, L, dtype=torch.bool).tril(-1), "causal_off_by_one"),
    (checks.check_make_causal_mask, lambda L: ~good_causal(L), "causal_inverted"),
    (checks.check_make_causal_mask, lambda L: torch.ones(L, L, dtype=torch.bool).triu(), "causal_transposed"),
    (checks.check_make_causal_mask, lambda L: good_causal(L).long(), "mask_not_bool"),
    (checks.check_make_padding_mask, lambda n, S: ~good_padding(n, S), "padding_inverted"),
    (checks.check_make_padding_mask, lambda n, S: good_padding(n + 1, S), "padding_off_by_one"),
    (checks.check_make_padding_mask, lambda n, S: good_padding((n - 1).clamp_min(0), S), "padding_off_by_one"),
    (checks.check_make_padding_mask, lambda n, S: good_padding(n, int(n.max())), "padding_ignores_S"),
    (checks.check_make_padding_mask, lambda n, S: good_padding(n, S).to(torch.float32), "mask_not_bool"),
    (checks.check_masked_attention,
     lambda q, k, v, mask: (_safe_softmax(_scaled(q, k)) * mask) @ v, "mask_after_softmax"),
    (checks.check_masked_attention,
     lambda q, k, v, mask: _safe_softmax(_scaled(q, k).masked_fill(mask, -math.inf)) @ v, "mask_inverted"),
    (checks.check_masked_attention,  # -1e9 does not fit in float16: masked_fill raises there
     lambda q, k, v, mask: torch.softmax(_scaled(q, k).masked_fill(~mask, -1e9), dim=-1) @ v, "finite_fill_half"),
    (checks.check_masked_attention,  # -inf, then a softmax that computes 0/0 on a fully masked row
     lambda q, k, v, mask: torch.softmax(_scaled(q, k).masked_fill(~mask, -math.inf), dim=-1) @ v,
     "nan_on_fully_masked"),
    (checks.check_masked_attention,  # the smallest finite number: a fully masked row turns uniform
     lambda q, k, v, mask: torch.softmax(_scaled(q, k).masked_fill(~mask, torch.finfo(q.dtype).min).float(), -1).to(q.dtype) @ v,
     "fully_masked_uniform"),
    (checks.check_masked_attention, lambda q, k, v, mask: _safe_softmax(_scaled(q, k)) @ v, "mask_ignored"),
    (checks.check_masked_attention,
     lambda q, k, v, mask: _safe_softmax((q @ k.transpose(-2, -1)).masked_fill(~mask, -math.inf)) @ v, "scale_forgotten"),
    (checks.check_combine, lambda c, p: c.unsqueeze(0) | p.unsqueeze(1), "combine_or"),
    (checks.check_combine, lambda c, p: c & p, "padding_not_expanded"),
    (checks.check_combine, lambda c, p: c.unsqueeze(0) & p.unsqueeze(2), "padding_on_queries"),
    (checks.check_combine, lambda c, p: good_combine(c, p).double(), "mask_not_bool"),
]


def test_a_nan_row_is_a_failure_not_a_pass(capsys):
    """The fully masked row property fails on NaN even though every other row is right."""
    nan_fn = BUGGY[[k for _, _, k in BUGGY].index("nan_on_fully_masked")][1]
    report = checks.check_masked_attention(nan_fn)
    failed = [r.title for r in report.results if not r.passed]
    assert failed == ["a fully masked row gives zeros, not NaN"]
    assert "NaN" in capsys.readouterr().out


def test_mask_failure_names_the_wrong_entry(capsys):
    checks.check_make_causal_mask(lambda L: torch.ones(L, L, dtype=torch.bool).tril(-1))
    out = capsys.readouterr().out
    assert "first at index (0, 0): got False, expected True" in out  # the token that cannot see itself


def test_the_checks_do_not_crash_on_wrong_types(capsys):
    for check in (checks.check_make_causal_mask, checks.check_make_padding_mask, checks.check_combine):
        report = check(lambda *args: [[True]])
        assert report.status == "failed" and report.passed == 0
    assert "returned list" in capsys.readouterr().out
