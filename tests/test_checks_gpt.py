"""Chapter 11 checks: right answers pass, unfilled ones say so, each known mistake gets its own diagnosis."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import checks

# Right answers, written independently of the references (the way a learner would).


def good_lm_loss(logits, ids):
    B, T, V = logits.shape
    log_probs = logits[:, :-1] - torch.logsumexp(logits[:, :-1], dim=-1, keepdim=True)  # (B, T-1, V)
    picked = log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return -picked.mean()


def good_sampling_probs(logits, temperature, top_k, top_p):
    x = logits / temperature
    if top_k is not None:
        kth = torch.topk(x, min(top_k, x.shape[-1]), dim=-1).values[..., -1:]
        x = torch.where(x < kth, torch.full_like(x, float("-inf")), x)
    if top_p is not None:
        probs = torch.softmax(x, dim=-1)
        sorted_probs, idx = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        remove_sorted = before >= top_p
        remove = torch.zeros_like(remove_sorted)
        remove.scatter_(-1, idx, remove_sorted)
        x = x.masked_fill(remove, float("-inf"))
    return torch.softmax(x, dim=-1)


def good_gqa_decode_step(query, key, value, cache_keys, cache_values):
    keys = torch.cat((cache_keys, key), dim=2)
    values = torch.cat((cache_values, value), dim=2)
    G = query.shape[1] // keys.shape[1]
    k = keys.repeat_interleave(G, dim=1)  # (B, H, P + 1, E)
    v = values.repeat_interleave(G, dim=1)
    scores = query @ k.transpose(-1, -2) / math.sqrt(query.shape[-1])
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    return weights @ v, keys, values


def good_prediction():
    return 4.3


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_lm_loss, good_lm_loss),
    (checks.check_sampling_probs, good_sampling_probs),
    (checks.check_gqa_decode_step, good_gqa_decode_step),
    (checks.check_predict_initial_loss, good_prediction),
]


@pytest.mark.parametrize("check, fn", GOOD, ids=[c.__name__ for c, _ in GOOD])
def test_right_answers_pass(check, fn, capsys):
    report = check(fn)
    assert report.status == "passed" and report.score == 1.0
    assert report.diagnoses == []
    assert "all properties passed" in capsys.readouterr().out


@pytest.mark.parametrize("check", [c for c, _ in GOOD], ids=[c.__name__ for c, _ in GOOD])
def test_unfilled_exercise_says_not_implemented_and_does_not_raise(check, capsys):
    report = check(not_implemented)
    assert report.status == "not implemented" and report.score == 0.0
    out = capsys.readouterr().out
    assert "not implemented yet" in out
    assert "Why:" not in out  # the prediction's answer is not given away before the learner predicts


def test_the_right_answers_also_pass_with_another_seed():
    for check, fn in GOOD:
        assert check(fn, seed=123).status == "passed"


def test_the_code_exercises_have_several_properties():
    for check, fn in GOOD[:3]:
        assert check(fn).total >= 4


def test_a_prediction_is_explained_whether_right_or_wrong(capsys):
    checks.check_predict_initial_loss(lambda: 4.33)
    right = capsys.readouterr().out
    checks.check_predict_initial_loss(lambda: 1.0)
    wrong = capsys.readouterr().out
    for out in (right, wrong):
        assert "Why:" in out and "ln 76 = 4.33" in out


# Buggy implementations, each written out on its own.


def loss_not_shifted(logits, ids):
    return F.cross_entropy(logits.flatten(0, 1), ids.flatten())


def loss_shifted_backwards(logits, ids):
    return F.cross_entropy(logits[:, 1:].flatten(0, 1), ids[:, :-1].flatten())


def loss_summed(logits, ids):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")


def loss_shift_across_batch(logits, ids):
    flat_logits, flat_ids = logits.flatten(0, 1), ids.flatten()
    return F.cross_entropy(flat_logits[:-1], flat_ids[1:])


def probs_softmax_first(logits, temperature, top_k, top_p):
    probs = torch.softmax(logits / temperature, dim=-1)  # softmax before the filter
    if top_k is not None and top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        p = torch.softmax(probs, -1)  # (what a learner would do next: treat them as logits)
        sp, idx = p.sort(-1, descending=True)
        drop = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, idx, (sp.cumsum(-1) - sp) >= top_p)
        probs = probs.masked_fill(drop, float("-inf"))
    return torch.softmax(probs, dim=-1)


def probs_not_renormalised(logits, temperature, top_k, top_p):
    probs = torch.softmax(logits / temperature, dim=-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_k is not None and top_k < probs.shape[-1]:
        keep = probs >= probs.topk(top_k, dim=-1).values[..., -1:]
    if top_p is not None and top_p < 1:
        p = torch.where(keep, probs, 0.0)
        p = p / p.sum(-1, keepdim=True)
        sp, idx = p.sort(-1, descending=True)
        keep = keep & torch.zeros_like(keep).scatter(-1, idx, (sp.cumsum(-1) - sp) < top_p)
    return torch.where(keep, probs, 0.0)


def make_probs(*, multiply=False, below_p=False, unsorted=False, top_p_first=False):
    def fn(logits, temperature, top_k, top_p):
        x = logits * temperature if multiply else logits / temperature
        full = torch.softmax(x, -1)
        if top_k is not None and top_k < x.shape[-1]:
            x = x.masked_fill(x < x.topk(top_k, dim=-1).values[..., -1:], float("-inf"))
        if top_p is not None and top_p < 1:
            probs = full if top_p_first else torch.softmax(x, -1)
            if unsorted:
                keep = (probs.cumsum(-1) - probs) < top_p
            else:
                sp, idx = probs.sort(-1, descending=True)
                cum = sp.cumsum(-1)
                keep_sorted = cum < top_p if below_p else (cum - sp) < top_p
                keep_sorted[..., 0] = True
                keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
            x = x.masked_fill(~keep, float("-inf"))
        return torch.softmax(x, -1)

    return fn


def make_step(**bug):
    def fn(query, key, value, cache_keys, cache_values):
        dim = bug.get("dim", -2)
        keys, values = torch.cat([cache_keys, key], dim=dim), torch.cat([cache_values, value], dim=dim)
        k_att, v_att = (cache_keys, cache_values) if bug.get("skip_new") else (keys, values)
        G = query.shape[1] // k_att.shape[1]
        if bug.get("tiled"):
            k_att, v_att = k_att.repeat(1, G, 1, 1), v_att.repeat(1, G, 1, 1)
        else:
            k_att, v_att = k_att.repeat_interleave(G, 1), v_att.repeat_interleave(G, 1)
        scale = 1.0 if bug.get("no_scale") else query.shape[-1] ** -0.5
        out = torch.softmax(query @ k_att.transpose(-1, -2) * scale, dim=-1) @ v_att
        if bug.get("old_cache"):
            return out, cache_keys, cache_values
        return out, keys, values

    return fn


BUGGY = [
    (checks.check_lm_loss, loss_not_shifted, "targets_not_shifted"),
    (checks.check_lm_loss, loss_shifted_backwards, "shifted_backwards"),
    (checks.check_lm_loss, loss_summed, "summed_not_mean"),
    (checks.check_lm_loss, loss_shift_across_batch, "shift_across_batch"),
    (checks.check_sampling_probs, probs_softmax_first, "softmax_before_top_k"),
    (checks.check_sampling_probs, probs_not_renormalised, "not_renormalised"),
    (checks.check_sampling_probs, make_probs(multiply=True), "temperature_multiplied"),
    (checks.check_sampling_probs, make_probs(below_p=True), "top_p_drops_crossing_token"),
    (checks.check_sampling_probs, make_probs(unsorted=True), "top_p_unsorted"),
    (checks.check_sampling_probs, make_probs(top_p_first=True), "top_p_before_top_k"),
    (checks.check_gqa_decode_step, make_step(dim=1), "cache_wrong_axis"),
    (checks.check_gqa_decode_step, make_step(dim=0), "cache_wrong_axis"),
    (checks.check_gqa_decode_step, make_step(dim=-1), "cache_wrong_axis"),
    (checks.check_gqa_decode_step, make_step(tiled=True), "heads_tiled_not_grouped"),
    (checks.check_gqa_decode_step, make_step(skip_new=True), "new_token_not_attended"),
    (checks.check_gqa_decode_step, make_step(old_cache=True), "cache_not_returned"),
    (checks.check_gqa_decode_step, make_step(no_scale=True), "no_scale"),
    (checks.check_predict_initial_loss, lambda: 76, "vocabulary_size"),
    (checks.check_predict_initial_loss, lambda: 1 / 76, "probability_not_loss"),
    (checks.check_predict_initial_loss, lambda: 6.25, "bits_not_nats"),
    (checks.check_predict_initial_loss, lambda: 0.0, "zero_loss"),
    (checks.check_predict_initial_loss, lambda: 3.3, "unigram_loss"),
]


@pytest.mark.parametrize("check, fn, key", BUGGY, ids=[f"{c.__name__}-{i}-{k}" for i, (c, _, k) in enumerate(BUGGY)])
def test_each_mistake_gets_its_own_diagnosis(check, fn, key, capsys):
    report = check(fn)
    assert report.status == "failed" and report.score < 1.0
    assert report.diagnoses == [key], f"expected only {key}, got {report.diagnoses}"
    out = capsys.readouterr().out
    assert "Diagnosis:" in out and "FAIL" in out


def test_wrong_axis_shows_the_error_and_names_dim_minus_2(capsys):
    report = checks.check_gqa_decode_step(make_step(dim=1))
    failed = [r for r in report.results if not r.passed]
    assert failed and any("raised RuntimeError: Sizes of tensors must match" in r.detail for r in failed)
    assert "dim=-2" in capsys.readouterr().out


def test_tiled_heads_pass_where_grouping_cannot_matter():
    """With Hkv = H or Hkv = 1, tiling and grouping pick the same heads: only the GQA property fails."""
    report = checks.check_gqa_decode_step(make_step(tiled=True))
    failed = {r.title for r in report.results if not r.passed}
    assert "grouped-query attention (H = 4, Hkv = 2)" in failed
    assert "multi-query attention (Hkv = 1)" not in failed
    assert "one key/value head per query head (H = Hkv, multi-head)" not in failed


def test_a_prediction_that_is_not_a_number_fails_with_a_reason():
    report = checks.check_predict_initial_loss(lambda: "about four")
    assert report.status == "failed" and "return a number" in report.results[0].detail


def test_the_checks_are_registered_for_the_grader_with_points():
    from course_lib.checks import gpt, points

    assert gpt in checks.CHAPTER_MODULES
    assert set(gpt.__all__) == {"check_lm_loss", "check_sampling_probs", "check_gqa_decode_step",
                                "check_predict_initial_loss"}
    for name in ("lm_loss", "sampling_probs", "gqa_decode_step", "predict_initial_loss"):
        assert name in points.POINTS


def test_the_vocabulary_size_in_the_prediction_check_is_the_corpus_one():
    from course_lib.checks import gpt
    from course_lib.data.corpus import CharTokenizer, load_shakespeare

    assert CharTokenizer(load_shakespeare()).vocab_size == gpt._VOCAB
