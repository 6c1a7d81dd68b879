"""course_lib.checks for chapter 08: right answers pass, each known mistake triggers its own diagnosis (and no other)."""

import io

import pytest
import torch

import course_lib.transformer as T
from course_lib import checks
from course_lib.checks import core
from course_lib.checks.transformer import LayerSpec, ModelSpec

# ------------------------------------------------------------------------------------------
# Right answers, written independently of the references.
# ------------------------------------------------------------------------------------------


def good_decoder_layer_forward(layer, x, memory, memory_key_padding_mask):
    L = x.shape[1]
    future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), diagonal=1)  # True above the diagonal
    h = layer.norm1(x)
    x = x + layer.self_attention(h, h, h, attn_mask=~future)
    h = layer.norm2(x)
    read = layer.cross_attention(h, memory, memory, attn_mask=memory_key_padding_mask[:, None, :])  # (B, 1, S)
    x = x + read
    hidden = layer.feed_forward.activation(layer.feed_forward.linear1(layer.norm3(x)))
    return x + layer.feed_forward.linear2(hidden)


def _log_softmax(z):
    return z - z.logsumexp(dim=-1, keepdim=True)


def good_teacher_forcing_loss(model, src, tgt, bos_id):
    B, L = tgt.shape
    tgt_in = torch.empty_like(tgt)
    tgt_in[:, 0] = bos_id
    tgt_in[:, 1:] = tgt[:, :-1]
    logp = _log_softmax(model(src, tgt_in))  # (B, L, V)
    picked = logp.gather(-1, tgt[..., None])[..., 0]  # (B, L)
    return -picked.sum() / (B * L)


@torch.no_grad()
def good_greedy_decode(model, src, max_len, bos_id):
    memory = model.encode(src)
    rows = [[bos_id] for _ in range(src.shape[0])]
    for _ in range(max_len):
        logits = model.decode(torch.tensor(rows, device=src.device), memory)  # (B, t, V)
        for b, row in enumerate(rows):
            row.append(int(torch.argmax(logits[b, len(row) - 1])))
    return torch.tensor([row[1:] for row in rows], device=src.device)


def good_find_alignment_head(cross_weights, alignment):
    N, B, H, L, S = cross_weights.shape
    best = None
    for layer in range(N):
        for head in range(H):
            values = [float(cross_weights[layer, b, head, i, int(alignment[b, i])])
                      for b in range(B) for i in range(L) if int(alignment[b, i]) >= 0]
            score = sum(values) / len(values)
            if best is None or score > best[2]:
                best = (layer, head, score)
    return best


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_decoder_layer_forward, good_decoder_layer_forward),
    (checks.check_teacher_forcing_loss, good_teacher_forcing_loss),
    (checks.check_greedy_decode, good_greedy_decode),
    (checks.check_find_alignment_head, good_find_alignment_head),
]
IDS = [c.__name__ for c, _ in GOOD]


@pytest.mark.parametrize("check, fn", GOOD, ids=IDS)
def test_other_seeds_still_pass_right_answers(check, fn):
    assert check(fn, seed=1).status == "passed"


def test_checks_are_exported():
    for name in ("check_decoder_layer_forward", "check_teacher_forcing_loss", "check_greedy_decode",
                 "check_find_alignment_head"):
        assert name in checks.__all__ and name in checks.transformer.__all__


# ------------------------------------------------------------------------------------------
# Buggy implementations, each with the one diagnosis it must trigger.
# ------------------------------------------------------------------------------------------


def _decoder(residual=(1, 1, 1), self_causal=True, cross_causal=False, padding=True, post_ln=False, norm_memory=False,
             swap=False):
    def fn(layer, x, memory, memory_key_padding_mask):
        mem = layer.norm2(memory) if norm_memory else memory
        key_mask = memory_key_padding_mask if padding else None

        def self_sub(h):
            return layer.self_attention(h, is_causal=self_causal)

        def cross_sub(h):
            if swap:
                return layer.cross_attention(mem, h, h)
            return layer.cross_attention(h, mem, mem, key_padding_mask=key_mask, is_causal=cross_causal)

        for norm, sub, keep in ((layer.norm1, self_sub, residual[0]), (layer.norm2, cross_sub, residual[1]),
                                (layer.norm3, layer.feed_forward, residual[2])):
            if post_ln:
                x = norm(x + sub(x))
            else:
                x = x + sub(norm(x)) if keep else sub(norm(x))
        return x

    return fn


def _shift(tgt, bos_id):
    return torch.cat([torch.full_like(tgt[:, :1], bos_id), tgt[:, :-1]], dim=1)


def _ce(logits, target, reduction="mean"):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction=reduction)


def _decode(steps=0, keep_bos=False, position=-1, causal=True, feed_back=True):
    @torch.no_grad()
    def fn(model, src, max_len, bos_id):
        memory = model.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, device=src.device)
        for _ in range(max_len + steps):
            logits = model.decode(out if feed_back else out[:, :1], memory, tgt_is_causal=causal)
            out = torch.cat([out, logits[:, position].argmax(-1, keepdim=True)], dim=1)
        return out if keep_bos else out[:, 1:]

    return fn


def _heads(index="skip", measure="weight", swap=False, reduce="mean"):
    def fn(cross_weights, alignment):
        N, B, H, L, S = cross_weights.shape
        table = torch.zeros(N, H, dtype=torch.float64)
        for layer in range(N):
            for head in range(H):
                values = []
                for b in range(B):
                    for i in range(L):
                        a = int(alignment[b, i])
                        if a < 0 and index == "skip":
                            continue
                        a = {"skip": a, "clamp": max(a, 0), "wrap": a}[index]
                        row = cross_weights[layer, b, head, i]
                        values.append(float(row[a]) if measure == "weight" else float(int(row.argmax()) == a % S))
                table[layer, head] = sum(values) / (len(values) if reduce == "mean" else 1)
        best = int(table.argmax())
        layer, head = divmod(best, H)
        return (head, layer, float(table[layer, head])) if swap else (layer, head, float(table[layer, head]))

    return fn


BUGGY = [
    (checks.check_decoder_layer_forward, _decoder(residual=(0, 1, 1)), "residual_forgotten"),
    (checks.check_decoder_layer_forward, _decoder(residual=(1, 0, 1)), "residual_forgotten"),
    (checks.check_decoder_layer_forward, _decoder(residual=(1, 1, 0)), "residual_forgotten"),
    (checks.check_decoder_layer_forward, _decoder(self_causal=False), "self_attention_not_causal"),
    (checks.check_decoder_layer_forward, _decoder(cross_causal=True), "cross_attention_made_causal"),
    (checks.check_decoder_layer_forward, _decoder(padding=False), "padding_mask_ignored"),
    (checks.check_decoder_layer_forward, _decoder(post_ln=True), "post_ln"),
    (checks.check_decoder_layer_forward, _decoder(norm_memory=True), "memory_normalized"),
    (checks.check_decoder_layer_forward, _decoder(swap=True), "cross_attention_swapped"),
    (checks.check_teacher_forcing_loss, lambda m, s, t, bos: _ce(m(s, t), t), "no_shift"),
    (checks.check_teacher_forcing_loss, lambda m, s, t, bos: _ce(m(s, _shift(t, bos)), _shift(t, bos)), "targets_shifted"),
    (checks.check_teacher_forcing_loss, lambda m, s, t, bos: _ce(m(s, t[:, :-1]), t[:, 1:]), "start_token_missing"),
    (checks.check_teacher_forcing_loss, lambda m, s, t, bos: _ce(m(s, _shift(t, bos)), t, "sum"), "sum_not_mean"),
    (checks.check_greedy_decode, _decode(keep_bos=True), "start_token_kept"),
    (checks.check_greedy_decode, _decode(steps=-1), "one_token_short"),
    (checks.check_greedy_decode, _decode(position=0), "stuck_on_first_position"),
    (checks.check_greedy_decode, _decode(feed_back=False), "stuck_on_first_position"),
    (checks.check_greedy_decode, _decode(causal=False), "no_causal_mask"),
    (checks.check_find_alignment_head, _heads(index="clamp"), "unaligned_positions_counted"),
    (checks.check_find_alignment_head, _heads(index="wrap"), "unaligned_positions_counted"),
    (checks.check_find_alignment_head, _heads(measure="argmax"), "accuracy_instead_of_weight"),
    (checks.check_find_alignment_head, _heads(swap=True), "layer_head_swapped"),
    (checks.check_find_alignment_head, _heads(reduce="sum"), "sum_not_mean"),
]


# ------------------------------------------------------------------------------------------
# The special cases of this chapter's checks.
# ------------------------------------------------------------------------------------------


def test_calling_the_layer_itself_is_refused_with_an_explanation(capsys):
    report = checks.check_decoder_layer_forward(lambda layer, x, m, k: layer(x, m, memory_key_padding_mask=k))
    assert report.status == "failed" and report.passed == 0
    assert "assembles the forward pass from the layer's parts" in capsys.readouterr().out


def test_a_crash_only_when_lengths_differ_is_explained(capsys):
    report = checks.check_decoder_layer_forward(_decoder(swap=True))
    out = capsys.readouterr().out
    assert "LengthMismatchError" in out and "runs when both are" in out
    assert "batch_transpose" not in report.diagnoses


def test_the_ready_made_function_is_not_accepted(capsys):
    report = checks.check_teacher_forcing_loss(lambda m, s, t, bos: T.teacher_forcing_loss(m, s, t, bos))
    assert report.status == "failed"
    assert any(r.title.startswith(core.HAND_WRITTEN) and not r.passed for r in report.results)


def test_a_wrong_return_type_is_reported_not_raised(capsys):
    report = checks.check_find_alignment_head(lambda w, a: 0)
    assert report.status == "failed" and report.passed == 0
    assert "expected a tuple (layer, head, score)" in capsys.readouterr().out
    # float where ids are expected (on the input's device, so that on a GPU this is the only mistake)
    report = checks.check_greedy_decode(lambda model, src, n, bos: torch.zeros(src.shape[0], n,
                                                                               device=src.device))
    assert report.status == "failed" and "integer tensor" in capsys.readouterr().out


def test_specs_build_the_same_module_every_time_and_leave_the_global_rng_alone():
    spec = LayerSpec(16, 2, seed=5)
    state = torch.get_rng_state()
    a, b = spec.build(), spec.build()
    assert torch.equal(torch.get_rng_state(), state)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    assert repr(spec) == "DecoderLayer(embed_dim=16, num_heads=2, seed=5)"
    model = ModelSpec(9, 8, seed=1, dtype=torch.float64).build()
    assert next(model.parameters()).dtype == torch.float64 and not model.training


def test_cases_travel_to_the_grader_sandbox():
    """The batch grader pickles every case (the specs too) and calls the captured wrapper in a sandbox."""
    for check, fn in GOOD:
        with core.capture() as captured:
            check(fn)
        (record,) = captured
        buffer = io.BytesIO()
        torch.save([[(c.args, c.kwargs) for c in p.cases] for p in record.exercise.properties], buffer)
        buffer.seek(0)
        cases = torch.load(buffer, weights_only=False)
        args, kwargs = cases[0][0]
        got = record.fn(*args, **kwargs)
        expected = record.exercise.reference(*args, **kwargs)
        compare = record.exercise.compare or core._difference
        assert compare(got, expected) is None
