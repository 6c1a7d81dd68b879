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
    m = x.max(dim=dim, keepdim=True).values
    z = (x - torch.where(m == float("-inf"), torch.zeros_like(m), m)).exp()  # an all -inf row: exp(-inf) = 0
    total = z.sum(dim=dim, keepdim=True)
    return z / torch.where(total == 0, torch.ones_like(total), total)


def good_softmax_float64_loop(x, dim=-1):
    """Row by row, in float64, converted back: slow but right."""
    moved = x.movedim(dim, -1).double()
    flat = moved.reshape(-1, moved.shape[-1])
    rows = []
    for row in flat:
        if torch.isinf(row).all() and (row < 0).all():
            rows.append(torch.zeros_like(row))
            continue
        e = torch.exp(row - row.max())
        rows.append(e / e.sum())
    return torch.stack(rows).reshape(moved.shape).movedim(-1, dim).to(x.dtype)


def softmax_in_float32(x, dim=-1):
    """Right values, but float64 input comes back as float32 (a `.float()` to be safe)."""
    return good_softmax(x.float(), dim=dim)


def naive_exp_attention(q, k, v, mask=None):
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    e = torch.exp(s)  # no max subtracted: inf in float32 above 88, in float16 above 11
    return (e / e.sum(dim=-1, keepdim=True)) @ v


def good_attention_float64_loops(q, k, v, mask=None):
    """One query at a time, in float64, converted back to the input's dtype."""
    q64, k64, v64 = q.double(), k.double(), v.double()
    out = []
    for i in range(q.shape[-2]):
        s = torch.einsum("...e,...se->...s", q64[..., i, :], k64) / math.sqrt(q.shape[-1])  # (..., S)
        if mask is not None:
            s = s.masked_fill(~mask[..., i, :], float("-inf"))
        out.append(torch.einsum("...s,...sv->...v", good_softmax(s), v64))  # (..., Ev)
    return torch.stack(out, dim=-2).to(q.dtype)  # (..., L, Ev)


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
    (checks.check_softmax, good_softmax_float64_loop),
    (checks.check_softmax_with_temperature, good_temperature),
    (checks.check_soft_lookup, good_lookup),
    (checks.check_scaled_scores, good_scaled),
    (checks.check_attention, good_attention),
    (checks.check_attention, good_attention_float64_loops),
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
    # found by a review: each of these got full marks before
    (checks.check_softmax, lambda x, dim=-1: (x - x.amax(dim, keepdim=True)).exp()
     / (x - x.amax(dim, keepdim=True)).exp().sum(dim, keepdim=True), "nan_on_fully_masked"),
    (checks.check_softmax, softmax_in_float32, "dtype_changed"),
    (checks.check_attention, naive_exp_attention, "unstable_softmax"),
    (checks.check_attention, lambda q, k, v, mask=None: good_softmax(_masked(q @ k.T / math.sqrt(q.shape[-1]), mask)) @ v,
     "batch_transpose"),
    (checks.check_scaled_scores, lambda q, k: q @ k.T / math.sqrt(q.shape[-1]), "batch_transpose"),
    (checks.check_scaled_scores, lambda q, k: good_scaled(q.float(), k.float()), "dtype_changed"),
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


def test_a_shape_error_is_not_called_a_transpose_without_evidence(capsys):
    """`key.transpose(1, 2)` is right for (B, S, E) but not for (B, H, S, E): a crash, but not the `.T` mistake."""
    report = checks.check_dot_product_scores(lambda q, k: q @ k.transpose(1, 2))
    assert report.status == "failed" and "batch_transpose" not in report.diagnoses
    report = checks.check_scaled_scores(lambda q, k: torch.bmm(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1]))
    assert report.status == "failed" and "batch_transpose" not in report.diagnoses
    capsys.readouterr()


def test_a_dtype_change_fails_the_dtype_property_only(capsys):
    report = checks.check_softmax(softmax_in_float32)
    failed = [r.title for r in report.results if not r.passed]
    assert failed == ["float64 in, float64 out"]
    assert "returned dtype float32, expected float64" in capsys.readouterr().out


def test_the_course_own_function_is_a_ready_made_one_in_the_notebook(capsys):
    import course_lib
    from course_lib.efficient import online_softmax

    report = checks.check_softmax(course_lib.softmax)  # `softmax = course_lib.softmax` in the notebook
    assert report.status == "failed" and report.passed == report.total - 1
    assert "softmax = course_lib.attention.softmax" in capsys.readouterr().out
    report = checks.check_online_softmax(online_softmax)  # `from course_lib.efficient import online_softmax`
    assert report.status == "failed" and not report.results[-1].passed
    assert "online_softmax = course_lib.efficient" in report.results[-1].detail
    # course_lib's other functions stay allowed where the task permits them: its softmax inside attention
    assert checks.check_attention(lambda q, k, v, mask=None: course_lib.softmax(
        good_scaled(q, k) if mask is None else good_scaled(q, k).masked_fill(~mask, float("-inf"))) @ v).status == "passed"
