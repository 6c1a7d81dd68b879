"""The predict-then-run questions and the investigations of chapters 01-10.

Right predictions pass and are explained; each common wrong prediction gets its own diagnosis. An
investigation written another way than the reference (its own random draws, its own search) gets
full marks; each common wrong finding gets its own diagnosis. The notebooks tag these cells
``predict`` and ``investigation``: every tagged cell defines a function whose check the grader finds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib import checks
from course_lib.checks import points
from course_lib.checks.questions import INVESTIGATION_TAG, PREDICT_TAG
from course_lib.efficient import MemoryTracker
from course_lib.grading import discover_chapters

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# Right investigations, each written independently of the reference (the way a learner would).
# --------------------------------------------------------------------------------------------


def good_flip_scale(query, key_a, key_b):
    """Scale key_b up in small steps until it wins (an experiment, not the formula)."""
    target = float(torch.dot(query, key_a))
    scale, step = 1.0, 1.0
    while step > 1e-5:  # grow by `step` while below the target, then refine the step
        if float(torch.dot(query, key_b * (scale + step))) < target:
            scale += step
        else:
            step /= 2
    return scale + step


def good_temperature(scores, target):
    temperatures = torch.logspace(-3, 3, 200001, dtype=torch.float64, device=scores.device)  # a dense grid
    largest = torch.softmax(scores.double()[None, :] / temperatures[:, None], dim=-1).amax(-1)
    return float(temperatures[(largest - target).abs().argmin()])


def good_saturating_dk(threshold, num_keys):
    generator = torch.Generator().manual_seed(99)  # other draws than the check's
    for dk in [2 ** i for i in range(10)]:
        q = torch.randn(1200, dk, generator=generator)
        k = torch.randn(1200, num_keys, dk, generator=generator)
        scores = torch.einsum("be,bse->bs", q, k)
        if float(torch.softmax(scores, dim=-1).max(dim=-1).values.mean()) > threshold:
            return dk
    return None


def good_leaking_positions(attend, L, E):
    leaks = set()
    x = torch.rand(L, E)
    before = attend(x)
    for j in range(L):  # change token j, look at the outputs before it
        y = x.clone()
        y[j] += 1.0
        after = attend(y)
        leaks |= {i for i in range(j) if not torch.allclose(before[i], after[i])}
    return sorted(leaks)


def good_previous_token_head(weights):
    H, L, _ = weights.shape
    on_previous = [sum(float(weights[h, i, i - 1]) for i in range(1, L)) for h in range(H)]
    return max(range(H), key=lambda h: on_previous[h])


def good_reordered_words(weights):
    source = [int(row.argmax()) for row in weights]
    return [t for t in range(1, len(source)) if source[t] < source[t - 1]]


def good_halving_offset(d_model, base):
    from course_lib.positional import sinusoidal_encoding

    pe = sinusoidal_encoding(2048, d_model, base=base, dtype=torch.float64)
    k = 1
    while float(pe[0] @ pe[k]) >= 0.5 * float(pe[0] @ pe[0]):
        k += 1
    return k


def good_memory_exponent(attention, lengths, head_dim):
    peaks = []
    for L in lengths:
        with MemoryTracker() as tracker:  # inputs made inside: a little more memory, the same exponent
            attention(torch.randn(L, head_dim), torch.randn(L, head_dim), torch.randn(L, head_dim))
        peaks.append(tracker.peak)
    return math.log(peaks[-1] / peaks[0]) / math.log(lengths[-1] / lengths[0])


def good_most_important_head(model, input_ids):
    N, H = model.num_layers, model.num_heads
    with torch.no_grad():
        full = model(input_ids).last_hidden_state
        best, best_change = None, -1.0
        for layer in range(N):
            for head in range(H):
                mask = torch.ones(N, H)
                mask[layer, head] = 0
                change = float(((model(input_ids, head_mask=mask).last_hidden_state - full) ** 2).sum())
                if change > best_change:
                    best, best_change = (layer, head), change
    return best


GOOD = [
    (checks.check_predict_cosine, lambda: 1.0),
    (checks.check_find_flip_scale, good_flip_scale),
    (checks.check_predict_shifted_softmax, lambda: 0.67),
    (checks.check_find_temperature, good_temperature),
    (checks.check_predict_score_std, lambda: 8.0),
    (checks.check_find_saturating_dk, good_saturating_dk),
    (checks.check_predict_causal_row_nonzeros, lambda: 4),
    (checks.check_find_leaking_positions, good_leaking_positions),
    (checks.check_predict_mha_parameters, lambda: 1_050_624),
    (checks.check_find_previous_token_head, good_previous_token_head),
    (checks.check_predict_cross_weights_shape, lambda: (2, 5, 7)),
    (checks.check_find_reordered_words, good_reordered_words),
    (checks.check_predict_rope_depends_on, lambda: "c"),
    (checks.check_find_similarity_halving_offset, good_halving_offset),
    (checks.check_predict_untrained_loss, lambda: 2.6),
    (checks.check_predict_score_matrix_mib, lambda: 64.0),
    (checks.check_find_memory_exponent, good_memory_exponent),
    (checks.check_predict_num_attention_maps, lambda: 72),
    (checks.check_find_most_important_head, good_most_important_head),
]

# --------------------------------------------------------------------------------------------
# Wrong answers: the predictions learners most often give, and wrong findings written out.
# --------------------------------------------------------------------------------------------


def flip_by_lengths(query, key_a, key_b):
    return float(key_a.norm() / key_b.norm())


def flip_shrinks(query, key_a, key_b):
    return float(torch.dot(query, key_b) / torch.dot(query, key_a))


def flip_by_cosines(query, key_a, key_b):
    return float(F.cosine_similarity(query, key_a, dim=0) / F.cosine_similarity(query, key_b, dim=0))


def temperature_multiplied(scores, target):
    temperatures = torch.logspace(-3, 3, 200001, dtype=torch.float64, device=scores.device)
    largest = torch.softmax(scores.double()[None, :] * temperatures[:, None], dim=-1).amax(-1)
    return float(temperatures[(largest - target).abs().argmin()])


def saturating_dk_scaled(threshold, num_keys):
    for dk in [2 ** i for i in range(10)]:
        q, k = torch.randn(1000, dk), torch.randn(1000, num_keys, dk)
        scores = torch.einsum("be,bse->bs", q, k) / math.sqrt(dk)
        if float(torch.softmax(scores, dim=-1).amax(-1).mean()) > threshold:
            return dk
    return None


def saturating_dk_any_draw(threshold, num_keys):
    for dk in [2 ** i for i in range(10)]:
        q, k = torch.randn(1000, dk), torch.randn(1000, num_keys, dk)
        if float(torch.softmax(torch.einsum("be,bse->bs", q, k), dim=-1).max()) > threshold:
            return dk
    return None


def leaks_from_last_token(attend, L, E):
    x = torch.rand(L, E)
    y = x.clone()
    y[-1] += 1.0
    changed = (attend(x) - attend(y)).abs().amax(-1) > 1e-6
    return [i for i in range(L - 1) if changed[i]]


def leaks_counting_itself(attend, L, E):
    x = torch.rand(L, E)
    found = set()
    for j in range(L):
        y = x.clone()
        y[j] += 1.0
        changed = (attend(x) - attend(y)).abs().amax(-1) > 1e-6
        found |= {i for i in range(j + 1) if changed[i]}
    return sorted(found)


def next_token_head(weights):
    return int(torch.diagonal(weights, offset=1, dim1=1, dim2=2).mean(-1).argmax())


def self_head(weights):
    return int(torch.diagonal(weights, dim1=1, dim2=2).mean(-1).argmax())


def sharpest_head(weights):
    return int(weights.reshape(weights.shape[0], -1).max(-1).values.argmax())


def reordered_over_targets(weights):
    source = weights.argmax(dim=0).tolist()
    return [t for t in range(1, len(source)) if source[t] < source[t - 1]]


def reordered_previous(weights):
    source = weights.argmax(dim=-1).tolist()
    return [t - 1 for t in range(1, len(source)) if source[t] < source[t - 1]]


def halving_last_above(d_model, base):
    return good_halving_offset(d_model, base) - 1


def halving_base_ignored(d_model, base):
    return good_halving_offset(d_model, 10000.0)


def memory_ratio(attention, lengths, head_dim):
    peaks = []
    for L in lengths:
        q = torch.randn(L, head_dim)
        with MemoryTracker() as tracker:
            attention(q, q.clone(), q.clone())
        peaks.append(tracker.peak)
    return peaks[-1] / peaks[0]


def memory_log_ratio(attention, lengths, head_dim):
    return math.log(memory_ratio(attention, lengths, head_dim))


def _changes(model, input_ids, keep_only=False):
    N, H = model.num_layers, model.num_heads
    with torch.no_grad():
        full = model(input_ids).last_hidden_state
        out = torch.zeros(N, H)
        for layer in range(N):
            for head in range(H):
                mask = torch.zeros(N, H) if keep_only else torch.ones(N, H)
                mask[layer, head] = 1.0 - mask[layer, head]
                out[layer, head] = (model(input_ids, head_mask=mask).last_hidden_state - full).abs().sum()
    return out


def _as_pair(scores):
    flat = int(scores.flatten().argmax())
    return (flat // scores.shape[1], flat % scores.shape[1])


def head_with_sharpest_map(model, input_ids):
    with torch.no_grad():
        maps = torch.stack(model(input_ids).attentions)  # (N, B, H, T, T)
    return _as_pair(maps.max(-1).values.mean(dim=(1, 3)))


def head_with_smallest_change(model, input_ids):
    return _as_pair(-_changes(model, input_ids))


def head_mask_inverted(model, input_ids):
    return _as_pair(_changes(model, input_ids, keep_only=True))


BUGGY = [
    (checks.check_predict_cosine, lambda: 50.0, "dot_product"),
    (checks.check_predict_cosine, lambda: 2.0, "length_ratio"),
    (checks.check_predict_cosine, lambda: 0.5, "inverse_length_ratio"),
    (checks.check_find_flip_scale, flip_by_lengths, "length_ratio"),
    (checks.check_find_flip_scale, flip_shrinks, "inverted_ratio"),
    (checks.check_find_flip_scale, flip_by_cosines, "cosine_ratio"),
    (checks.check_predict_shifted_softmax, lambda: 1.0, "one_hot"),
    (checks.check_predict_shifted_softmax, lambda: 0.333, "uniform"),
    (checks.check_find_temperature, temperature_multiplied, "temperature_multiplied"),
    (checks.check_predict_score_std, lambda: 64.0, "variance_not_std"),
    (checks.check_predict_score_std, lambda: 1.0, "already_scaled"),
    (checks.check_predict_score_std, lambda: 0.125, "inverse_sqrt"),
    (checks.check_find_saturating_dk, saturating_dk_scaled, "scaled_scores"),
    (checks.check_find_saturating_dk, saturating_dk_any_draw, "any_draw_not_mean"),
    (checks.check_predict_causal_row_nonzeros, lambda: 3, "forgot_itself"),
    (checks.check_predict_causal_row_nonzeros, lambda: 6, "counted_the_future"),
    (checks.check_predict_causal_row_nonzeros, lambda: 7, "future_and_itself"),
    (checks.check_predict_causal_row_nonzeros, lambda: 10, "no_mask"),
    (checks.check_find_leaking_positions, leaks_from_last_token, "last_token_only"),
    (checks.check_find_leaking_positions, leaks_counting_itself, "counted_itself"),
    (checks.check_predict_mha_parameters, lambda: 4 * 512 * 512, "no_biases"),
    (checks.check_predict_mha_parameters, lambda: 3 * (512 * 512 + 512), "no_output_projection"),
    (checks.check_predict_mha_parameters, lambda: 8 * 3 * (512 * 512 + 512) + 512 * 512 + 512, "full_width_per_head"),
    (checks.check_predict_mha_parameters, lambda: 8 * 1_050_624, "parameters_times_heads"),
    (checks.check_find_previous_token_head, next_token_head, "next_token"),
    (checks.check_find_previous_token_head, self_head, "itself"),
    (checks.check_find_previous_token_head, sharpest_head, "largest_weight"),
    (checks.check_predict_cross_weights_shape, lambda: (2, 7, 5), "transposed"),
    (checks.check_predict_cross_weights_shape, lambda: [2, 5, 5], "decoder_self_attention"),
    (checks.check_predict_cross_weights_shape, lambda: torch.Size([2, 7, 7]), "encoder_self_attention"),
    (checks.check_find_reordered_words, reordered_over_targets, "argmax_over_targets"),
    (checks.check_find_reordered_words, reordered_previous, "off_by_one"),
    (checks.check_predict_rope_depends_on, lambda: "a", "query_position"),
    (checks.check_predict_rope_depends_on, lambda: "B", "key_position"),
    (checks.check_predict_rope_depends_on, lambda: "d", "sum"),
    (checks.check_predict_rope_depends_on, lambda: "e", "absolute"),
    (checks.check_find_similarity_halving_offset, halving_last_above, "last_above_half"),
    (checks.check_find_similarity_halving_offset, halving_base_ignored, "base_ignored"),
    (checks.check_predict_untrained_loss, lambda: 13, "vocabulary_size"),
    (checks.check_predict_untrained_loss, lambda: 1 / 13, "probability_not_loss"),
    (checks.check_predict_untrained_loss, lambda: 3.7, "bits_not_nats"),
    (checks.check_predict_untrained_loss, lambda: 0, "zero_loss"),
    (checks.check_predict_score_matrix_mib, lambda: 16, "entries_not_bytes"),
    (checks.check_predict_score_matrix_mib, lambda: 67.1, "megabytes_not_mebibytes"),
    (checks.check_predict_score_matrix_mib, lambda: 0.0625, "gibibytes"),
    (checks.check_predict_score_matrix_mib, lambda: 4096 * 4 / 2 ** 20, "linear_in_length"),
    (checks.check_predict_score_matrix_mib, lambda: 128.0, "float64"),
    (checks.check_find_memory_exponent, memory_ratio, "ratio_not_exponent"),
    (checks.check_find_memory_exponent, memory_log_ratio, "log_ratio_not_divided"),
    (checks.check_predict_num_attention_maps, lambda: 12, "heads_only"),
    (checks.check_predict_num_attention_maps, lambda: 6, "layers_only"),
    (checks.check_predict_num_attention_maps, lambda: 18, "layers_plus_heads"),
    (checks.check_predict_num_attention_maps, lambda: 384, "hidden_size"),
    (checks.check_find_most_important_head, head_with_sharpest_map, "sharpest_attention"),
    (checks.check_find_most_important_head, head_with_smallest_change, "smallest_change"),
    (checks.check_find_most_important_head, head_mask_inverted, "mask_inverted"),
]

PREDICTIONS = [(c, f) for c, f in GOOD if c.__name__.startswith("check_predict")]
INVESTIGATIONS = [(c, f) for c, f in GOOD if not c.__name__.startswith("check_predict")]


@pytest.mark.parametrize("check, fn", PREDICTIONS, ids=[c.__name__ for c, _ in PREDICTIONS])
def test_a_prediction_is_explained_once_predicted_right_or_wrong(check, fn, capsys):
    check(fn)
    right = capsys.readouterr().out
    wrong = next(f for c, f, _ in BUGGY if c is check)
    check(wrong)
    out = capsys.readouterr().out
    assert "Why:" in right and "Why:" in out and "Diagnosis:" in out


@pytest.mark.parametrize("check, fn", GOOD, ids=[c.__name__ for c, _ in GOOD])
def test_a_stub_gets_no_explanation(check, fn, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert check(stub).status == "not implemented"
    assert "Why:" not in capsys.readouterr().out  # the answer is not given away before the learner tries


@pytest.mark.parametrize("check, fn", INVESTIGATIONS, ids=[c.__name__ for c, _ in INVESTIGATIONS])
def test_a_wrong_investigation_is_not_explained(check, fn, capsys):
    wrong = next(f for c, f, _ in BUGGY if c is check)
    assert check(wrong).status == "failed"
    assert "Why:" not in capsys.readouterr().out  # its "why" would give the finding away


def test_a_prediction_that_is_not_a_number_or_option_fails_with_a_reason():
    report = checks.check_predict_score_std(lambda: "eight")
    assert report.status == "failed" and "return a number" in report.results[0].detail
    report = checks.check_predict_cross_weights_shape(lambda: "(2, 5, 7)")
    assert report.status == "failed" and "returned str, expected a tuple" in report.results[0].detail


def test_the_answers_are_the_course_code_s_own():
    """The predicted values, measured here with PyTorch's own functions (not the checks' references)."""
    u, v = torch.tensor([3.0, 4.0]), torch.tensor([6.0, 8.0])
    assert F.cosine_similarity(u, v, dim=0).item() == pytest.approx(1.0)
    assert torch.softmax(torch.tensor([101.0, 102.0, 103.0]), -1).max().item() == pytest.approx(0.665, abs=1e-3)
    q, k = torch.randn(20000, 64), torch.randn(20000, 64)
    assert (q * k).sum(-1).std().item() == pytest.approx(8.0, abs=0.2)
    mha = torch.nn.MultiheadAttention(512, 8)
    assert sum(p.numel() for p in mha.parameters()) == 1_050_624
    _, weights = torch.nn.MultiheadAttention(8, 1, batch_first=True)(torch.randn(2, 5, 8), torch.randn(2, 7, 8),
                                                                      torch.randn(2, 7, 8))
    assert tuple(weights.shape) == (2, 5, 7)


def test_a_leaking_mask_found_by_the_check_matches_pytorch_s_causal_attention():
    """The right-mask module leaks nothing: it equals PyTorch's causal attention."""
    from course_lib.checks.masking import MaskedSelfAttention

    x = torch.randn(6, 4)
    expected = F.scaled_dot_product_attention(x[None], x[None], x[None], is_causal=True)[0]
    torch.testing.assert_close(MaskedSelfAttention("causal")(x), expected)
    assert good_leaking_positions(MaskedSelfAttention("after_softmax"), 5, 3) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------
# The tags: the notebooks mark these cells, and the grader finds and scores each one.
# --------------------------------------------------------------------------------------------

_DEF = re.compile(r"^def (\w+)\(", re.MULTILINE)


def _tagged(tag: str) -> dict[str, list[str]]:
    """Function names defined in the cells tagged ``tag``, by solution notebook stem."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and tag in cell.metadata.get("tags", []):
                found.setdefault(path.stem, []).extend(_DEF.findall(cell.source))
    return found


def test_every_chapter_has_a_tagged_prediction_and_investigation_and_the_exercises_keep_the_tags():
    predictions, investigations = _tagged(PREDICT_TAG), _tagged(INVESTIGATION_TAG)
    chapters = [p.stem for p in sorted((ROOT / "solutions").glob("*.ipynb"))]
    for chapter in chapters[:10]:  # 01 .. 10 (11 has its prediction; its investigation is another task)
        assert predictions.get(chapter), f"{chapter}: no cell tagged {PREDICT_TAG!r}"
        assert investigations.get(chapter), f"{chapter}: no cell tagged {INVESTIGATION_TAG!r}"
    for chapter, names in predictions.items():
        assert all(n.startswith("predict_") for n in names), (chapter, names)
    for chapter in chapters:
        exercise = nbformat.read(ROOT / "exercises" / f"{chapter}.ipynb", as_version=4)
        tags = [t for cell in exercise.cells for t in cell.metadata.get("tags", [])]
        assert tags.count(PREDICT_TAG) == len(predictions.get(chapter, []))
        assert tags.count(INVESTIGATION_TAG) == len(investigations.get(chapter, []))


def test_the_grader_finds_and_scores_every_tagged_exercise():
    chapters = discover_chapters(ROOT / "solutions", seed=0)
    for tag in (PREDICT_TAG, INVESTIGATION_TAG):
        for chapter, names in _tagged(tag).items():
            assert not chapters[chapter].error, chapters[chapter].error
            for name in names:
                assert name in chapters[chapter].names, f"{chapter}: the grader does not find {name}"
                assert name in points.POINTS, f"{name} has no points"
