"""course_lib.checks: right answers pass, each known mistake triggers its own diagnosis (and no other)."""

import math

import torch

from course_lib import checks

# Right answers, written independently of the references (einsum, explicit formulas).


def good_dot(u, v):
    return torch.einsum("e,e->", u, v)


def good_cosine(u, v):
    return torch.einsum("...e,...e->...", u, v) / (u.pow(2).sum(-1).sqrt() * v.pow(2).sum(-1).sqrt())


def good_scores(q, k):
    return torch.einsum("...le,...se->...ls", q, k)


def good_softmax(x, dim=-1):
    z = x - x.max(dim=dim, keepdim=True).values
    return z.exp() / z.exp().sum(dim=dim, keepdim=True)


def good_temperature(x, temperature):
    return good_softmax(x / temperature)


def good_lookup(q, k, v):
    return torch.einsum("s,sv->v", good_softmax(torch.einsum("se,e->s", k, q), dim=0), v)


def good_scaled(q, k):
    return good_scores(q, k) / q.shape[-1] ** 0.5


def good_attention(q, k, v, mask=None):
    s = good_scaled(q, k)
    if mask is not None:
        s = s.masked_fill(mask.logical_not(), float("-inf"))
    return good_softmax(s.float()).to(q.dtype) @ v


def good_jacobian(p):
    return torch.diag_embed(p) - p[:, None] * p[None, :]


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_dot, good_dot),
    (checks.check_cosine_similarity, good_cosine),
    (checks.check_dot_product_scores, good_scores),
    (checks.check_softmax, good_softmax),
    (checks.check_softmax_with_temperature, good_temperature),
    (checks.check_soft_lookup, good_lookup),
    (checks.check_scaled_scores, good_scaled),
    (checks.check_attention, good_attention),
    (checks.check_softmax_jacobian, good_jacobian),
]


def _scores(q, k):
    return q @ k.transpose(-2, -1)


def _masked(s, mask, fill=float("-inf"), invert=False):
    if mask is None:
        return s
    return s.masked_fill(mask if invert else ~mask, fill)


BUGGY = [
    # (check, buggy implementation, the diagnosis it must trigger)
    (checks.check_dot, lambda u, v: u * v, "no_sum"),
    (checks.check_cosine_similarity, lambda u, v: (u * v).sum(-1), "raw_dot"),
    (checks.check_cosine_similarity, lambda u, v: (u * v).sum(-1) / (u.norm(dim=-1) ** 2 * v.norm(dim=-1) ** 2), "squared_norms"),
    (checks.check_dot_product_scores, lambda q, k: k @ q.transpose(-2, -1), "key_query_swapped"),
    (checks.check_dot_product_scores, lambda q, k: q @ k.T, "batch_transpose"),
    (checks.check_dot_product_scores, lambda q, k: _scores(q, k) / math.sqrt(q.shape[-1]), "scaled"),
    (checks.check_softmax, lambda x, dim=-1: x.exp() / x.exp().sum(dim, keepdim=True), "unstable_softmax"),
    (checks.check_softmax, lambda x, dim=-1: good_softmax(x, dim=0 if dim % x.dim() else -1), "softmax_wrong_axis"),
    (checks.check_softmax, lambda x, dim=-1: (x - x.amax(dim, keepdim=True)).exp(), "no_normalisation"),
    (checks.check_softmax_with_temperature, lambda x, temperature: good_softmax(x * temperature), "temperature_multiplied"),
    (checks.check_softmax_with_temperature, lambda x, temperature: good_softmax(x), "temperature_ignored"),
    (checks.check_soft_lookup, lambda q, k, v: good_softmax(k @ q, dim=0), "returned_weights"),
    (checks.check_soft_lookup, lambda q, k, v: v[(k @ q).argmax()], "hard_lookup"),
    (checks.check_scaled_scores, lambda q, k: _scores(q, k), "scale_forgotten"),
    (checks.check_scaled_scores, lambda q, k: _scores(q, k) / q.shape[-1], "scale_by_dk"),
    (checks.check_scaled_scores, lambda q, k: _scores(q, k) / math.sqrt(k.shape[-2]), "scale_by_length"),
    (checks.check_attention, lambda q, k, v, mask=None: good_softmax(_masked(_scores(q, k), mask)) @ v, "scale_forgotten"),
    (checks.check_attention,
     lambda q, k, v, mask=None: good_softmax(_masked(_scores(q, k) / q.shape[-1], mask)) @ v, "scale_by_dk"),
    (checks.check_attention,
     lambda q, k, v, mask=None: good_softmax(_masked(good_scaled(q, k), mask, invert=True)) @ v, "mask_inverted"),
    (checks.check_attention,
     lambda q, k, v, mask=None: (good_softmax(good_scaled(q, k)) * (1 if mask is None else mask)) @ v, "mask_after_softmax"),
    (checks.check_attention,
     lambda q, k, v, mask=None: torch.softmax(_masked(good_scaled(q, k), mask, fill=-1e9), -1) @ v, "finite_fill_half"),
    (checks.check_attention,
     lambda q, k, v, mask=None: torch.softmax(_masked(good_scaled(q, k), mask), dim=-2).nan_to_num() @ v, "softmax_wrong_axis"),
    (checks.check_softmax_jacobian, lambda p: torch.diag(p * (1 - p)), "diagonal_only"),
    (checks.check_softmax_jacobian, lambda p: torch.outer(p, p) - torch.diag(p), "sign_flipped"),
    # written as learners write them, not copied from the mistake variants
    (checks.check_dot, lambda u, v: torch.linalg.vector_norm(u) * torch.linalg.vector_norm(v), "norm_product"),
    (checks.check_cosine_similarity, lambda u, v: torch.einsum("...i,...i->...", u, v) / u.norm(dim=-1), "one_norm"),
    (checks.check_cosine_similarity, lambda u, v: torch.sum(u * v) / (torch.norm(u) * torch.norm(v)), "sum_all"),
    (checks.check_softmax, lambda x, dim=-1: torch.exp(x - torch.max(x)) / torch.sum(torch.exp(x - torch.max(x))),
     "global_sum"),
    (checks.check_softmax_with_temperature, lambda x, temperature: torch.exp(x / temperature)
     / torch.exp(x / temperature).sum(-1, keepdim=True), "unstable_softmax"),
    (checks.check_softmax_with_temperature, lambda x, temperature: good_softmax(x) / temperature,
     "temperature_after_softmax"),
    (checks.check_soft_lookup, lambda q, k, v: torch.einsum("s,se->e", k @ q, v), "no_softmax"),
    (checks.check_soft_lookup, lambda q, k, v: good_softmax((k @ q) / q.shape[-1] ** 0.5) @ v, "scaled"),
    (checks.check_scaled_scores, lambda q, k: (k @ q.mT) / math.sqrt(q.shape[-1]), "key_query_swapped"),
    (checks.check_scaled_scores, lambda q, k: _scores(q, k) * q.shape[-1] ** 0.5, "scale_multiplied"),
    (checks.check_attention, lambda q, k, v, mask=None: good_softmax(good_scaled(q, k)) @ v, "mask_ignored"),
    (checks.check_softmax_jacobian, lambda p: torch.diag_embed(p), "missing_outer"),
]


def test_failure_shows_the_smallest_failing_input(capsys):
    checks.check_softmax(lambda x, dim=-1: x.exp() / x.exp().sum(dim, keepdim=True))
    out = capsys.readouterr().out
    assert "[1000, 1001, 1002]" in out  # the hand-made overflow example, shown in full


def test_a_crash_is_reported_not_raised(capsys):
    def broken(x, dim=-1):
        raise ZeroDivisionError("boom")

    report = checks.check_softmax(broken)
    assert report.status == "failed" and report.passed == 0
    assert "ZeroDivisionError: boom" in capsys.readouterr().out


def test_not_a_function(capsys):
    report = checks.check_softmax(42)
    assert report.status == "error" and "not a function" in capsys.readouterr().out


def test_the_check_does_not_show_the_reference_code(capsys):
    import inspect

    checks.check_attention(lambda q, k, v, mask=None: q)
    out = capsys.readouterr().out
    reference_line = "scaled_dot_product_attention(q, k, v, attn_mask=mask)"
    assert reference_line in inspect.getsource(checks.check_attention) and reference_line not in out
