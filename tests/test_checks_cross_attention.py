"""course_lib.checks for chapter 06: right answers pass, each known mistake triggers its own diagnosis (and no other)."""

import math

import pytest
import torch

from course_lib import checks

# ------------------------------------------------------------------------------------------
# Right answers, written independently of the references (einsum, explicit loops).
# ------------------------------------------------------------------------------------------


def _softmax(x, dim=-1):
    z = x - x.max(dim=dim, keepdim=True).values
    return z.exp() / z.exp().sum(dim=dim, keepdim=True)


def good_cross_attention_float64_loops(x_dec, x_enc, W_query, W_key, W_value):
    """One decoder token at a time, in float64, converted back at the end."""
    B, L, _ = x_dec.shape
    out = []
    for b in range(B):
        k = x_enc[b].double() @ W_key.double()  # (S, E)
        v = x_enc[b].double() @ W_value.double()  # (S, Ev)
        rows = []
        for i in range(L):
            q = x_dec[b, i].double() @ W_query.double()  # (E,)
            rows.append(torch.softmax(k @ q / math.sqrt(q.shape[0]), dim=0) @ v)  # (Ev,)
        out.append(torch.stack(rows))
    return torch.stack(out).to(x_dec.dtype)


def good_cross_attention(x_dec, x_enc, W_query, W_key, W_value):
    q = torch.einsum("bld,de->ble", x_dec, W_query)
    k = torch.einsum("bsd,de->bse", x_enc, W_key)
    v = torch.einsum("bsd,dv->bsv", x_enc, W_value)
    w = _softmax(torch.einsum("ble,bse->bls", q, k) / W_query.shape[-1] ** 0.5)
    return torch.einsum("bls,bsv->blv", w, v)


def good_masks(tgt_len, src_lengths):
    lengths, device = [int(n) for n in src_lengths], getattr(src_lengths, "device", None)
    S = max(lengths)
    self_mask = torch.tensor([[j <= i for j in range(tgt_len)] for i in range(tgt_len)], device=device)
    cross = torch.tensor([[[j < n for j in range(S)] for _ in range(tgt_len)] for n in lengths], device=device)
    return self_mask, cross


def good_alignment_accuracy(weights, alignment):
    hits = [float(int(torch.argmax(row)) == int(a)) for row, a in zip(weights, alignment)]
    return torch.tensor(sum(hits) / len(hits), dtype=weights.dtype, device=weights.device)


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_cross_attention, good_cross_attention),
    (checks.check_cross_attention, good_cross_attention_float64_loops),
    (checks.check_encoder_decoder_masks, good_masks),
    (checks.check_alignment_accuracy, good_alignment_accuracy),
]


@pytest.mark.parametrize("check", [c for c, _ in GOOD], ids=[c.__name__ for c, _ in GOOD])
def test_other_seeds_still_pass_right_answers(check):
    for c, fn in GOOD:
        if c is check:
            for seed in (1, 2):
                assert check(fn, seed=seed).status == "passed"


def test_checks_are_exported():
    for name in ("check_cross_attention", "check_encoder_decoder_masks", "check_alignment_accuracy"):
        assert name in checks.__all__ and name in checks.cross_attention.__all__


# ------------------------------------------------------------------------------------------
# Buggy implementations, each with the one diagnosis it must trigger.
# ------------------------------------------------------------------------------------------


def _attend(q_src, k_src, v_src, W_query, W_key, W_value, scale=True, dim=-1):
    q, k, v = q_src @ W_query, k_src @ W_key, v_src @ W_value
    s = q @ k.transpose(-2, -1)
    if scale:
        s = s / math.sqrt(q.shape[-1])
    return _softmax(s, dim=dim) @ v


def _masks(tgt_len, src_lengths, diagonal=0, causal_cross=False, invert=False, expand=True):
    lengths, device = [int(n) for n in src_lengths], getattr(src_lengths, "device", None)
    B, S = len(lengths), max(lengths)
    self_mask = torch.ones(tgt_len, tgt_len, device=device).tril(diagonal).bool()
    pad = torch.arange(S, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]  # (B, S)
    cross = pad[:, None, :].repeat(1, tgt_len, 1) if expand else pad[:, None, :]
    if causal_cross:
        cross = cross & torch.ones(tgt_len, S, device=device).tril().bool()
    if invert:
        self_mask, cross = ~self_mask, ~cross
    return self_mask, cross


def naive_exp_cross_attention(x_dec, x_enc, W_query, W_key, W_value):
    """exp without subtracting the max: right for small scores, inf / inf = NaN above 88 in float32."""
    q, k, v = x_dec @ W_query, x_enc @ W_key, x_enc @ W_value
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return e / e.sum(dim=-1, keepdim=True) @ v


BUGGY = [
    # (check, buggy implementation, the diagnosis it must trigger)
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xe, xd, xd, wq, wk, wv), "queries_from_encoder"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xe, xe, xe, wq, wk, wv), "queries_from_encoder"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xd, xd, xe, wq, wk, wv), "keys_from_decoder"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xd, xd, xd, wq, wk, wv), "keys_from_decoder"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xd, xe, xe, wq, wk, wv, scale=False), "scale_forgotten"),
    (checks.check_cross_attention,
     lambda xd, xe, wq, wk, wv: _softmax((xd @ wq) @ (xe @ wk).transpose(-2, -1) / math.sqrt(xd.shape[-1])) @ (xe @ wv),
     "scale_by_model_dim"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _attend(xd, xe, xe, wq, wk, wv, dim=-2), "softmax_wrong_axis"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: _softmax((xd @ wq) @ (xe @ wk).T) @ (xe @ wv), "batch_transpose"),
    (checks.check_cross_attention, naive_exp_cross_attention, "unstable_softmax"),
    (checks.check_cross_attention, lambda xd, xe, wq, wk, wv: good_cross_attention(
        xd.float(), xe.float(), wq.float(), wk.float(), wv.float()), "dtype_changed"),
    (checks.check_encoder_decoder_masks, lambda L, lengths: _masks(L, lengths, causal_cross=True), "cross_attention_made_causal"),
    (checks.check_encoder_decoder_masks, lambda L, lengths: _masks(L, lengths, diagonal=-1), "causal_off_by_one"),
    (checks.check_encoder_decoder_masks, lambda L, lengths: _masks(L, lengths, diagonal=1), "causal_off_by_one"),
    (checks.check_encoder_decoder_masks, lambda L, lengths: _masks(L, lengths, invert=True), "mask_inverted"),
    (checks.check_encoder_decoder_masks, lambda L, lengths: _masks(L, lengths, expand=False), "cross_mask_not_expanded"),
    (checks.check_alignment_accuracy, lambda w, a: (w.argmax(0) == a).float().mean(), "argmax_wrong_axis"),
    (checks.check_alignment_accuracy, lambda w, a: w.gather(-1, a[:, None]).mean(), "mean_weight_instead_of_accuracy"),
    (checks.check_alignment_accuracy, lambda w, a: (w.argmax(-1) == a).sum().to(w.dtype), "count_instead_of_fraction"),
]


def test_a_crash_only_when_lengths_differ_is_explained(capsys):
    """Keys from the decoder and values from the encoder only run when L == S; the report says so."""
    report = checks.check_cross_attention(lambda xd, xe, wq, wk, wv: _attend(xd, xd, xe, wq, wk, wv))
    out = capsys.readouterr().out
    assert "LengthMismatchError" in out and "but runs when both are" in out
    assert "batch_transpose" not in report.diagnoses


def test_a_wrong_return_type_is_reported_not_raised(capsys):
    report = checks.check_encoder_decoder_masks(lambda L, lengths: torch.ones(L, L, dtype=torch.bool))
    assert report.status == "failed" and report.passed == 0
    assert "pair" in capsys.readouterr().out


def test_float_masks_are_refused_with_a_reason(capsys):
    report = checks.check_encoder_decoder_masks(lambda L, lengths: tuple(m.float() for m in good_masks(L, lengths)))
    assert report.status == "failed"
    assert "torch.bool" in capsys.readouterr().out
