"""course_lib.data.translation: the toy translation task is what its docstring says, and cross-attention learns it."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.data import translation as toy
from course_lib.data.translation import (
    ADJECTIVES,
    DETERMINERS,
    INTRANSITIVE_VERBS,
    LEXICON,
    MAX_LEN,
    NOUNS,
    PAD,
    SOURCE_VOCAB,
    TARGET_VOCAB,
    TRANSITIVE_VERBS,
    CrossAttentionTranslator,
    alignment_matrix,
    make_batch,
    sample_sentence,
    translate,
)

WORDS = sorted(LEXICON)


def test_a_sentence_by_hand():
    french, alignment = translate("the red cars see my sad dogs".split())
    assert french == "les voitures rouges voient mes chiens tristes".split()
    assert alignment == [0, 2, 1, 3, 4, 6, 5]
    assert translate("our young birds sing".split()) == ("nos oiseaux jeunes chantent".split(), [0, 2, 1, 3])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=9))
def test_translate_is_word_by_word_with_adjective_noun_pairs_swapped(words):
    french, alignment = translate(words)
    assert sorted(alignment) == list(range(len(words)))  # a permutation: one source word per target word
    assert french == [LEXICON[words[s]] for s in alignment]
    for t, s in enumerate(alignment):
        if s != t:  # only an adjective-noun pair moves, and only by one place
            pair = (words[min(s, t)], words[max(s, t)])
            assert abs(s - t) == 1 and pair[0] in ADJECTIVES and pair[1] in NOUNS
    # every adjective directly followed by a noun ends up after it
    swapped = {i for i in range(len(words) - 1) if alignment[i] == i + 1}
    for i in range(len(words) - 1):
        if words[i] in ADJECTIVES and words[i + 1] in NOUNS and (i - 1) not in swapped:
            assert i in swapped


def test_vocabularies():
    assert SOURCE_VOCAB[0] == PAD == TARGET_VOCAB[0]
    assert set(SOURCE_VOCAB[1:]) == set(LEXICON) and len(SOURCE_VOCAB) == len(set(SOURCE_VOCAB))
    assert set(TARGET_VOCAB[1:]) == set(LEXICON.values()) and len(set(LEXICON.values())) == len(LEXICON)
    assert list(TARGET_VOCAB[1:]) == sorted(TARGET_VOCAB[1:])


@pytest.mark.parametrize("seed", range(5))
def test_sample_sentence_follows_the_two_patterns_without_repeats(seed):
    g = torch.Generator().manual_seed(seed)
    seen_lengths = set()
    for _ in range(40):
        words = sample_sentence(g)
        seen_lengths.add(len(words))
        assert len(set(words)) == len(words)
        assert words[0] in DETERMINERS and words[1] in ADJECTIVES and words[2] in NOUNS
        if len(words) == 4:
            assert words[3] in INTRANSITIVE_VERBS
        else:
            assert len(words) == MAX_LEN and words[3] in TRANSITIVE_VERBS
            assert words[4] in DETERMINERS and words[5] in ADJECTIVES and words[6] in NOUNS
    assert seen_lengths == {4, 7}
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    assert [sample_sentence(g1) for _ in range(5)] == [sample_sentence(g2) for _ in range(5)]


@pytest.mark.parametrize("seed", range(3))
def test_make_batch_encodes_pads_and_aligns(seed):
    batch = make_batch(16, generator=torch.Generator().manual_seed(seed))
    B, S = batch.src.shape
    assert B == 16 and batch.tgt.shape == (B, S) == batch.alignment.shape
    assert S == max(len(w) for w in batch.src_words)
    for b in range(B):
        n = int(batch.src_lengths[b])
        assert n == len(batch.src_words[b])
        assert [SOURCE_VOCAB[i] for i in batch.src[b, :n]] == batch.src_words[b]
        assert [TARGET_VOCAB[i] for i in batch.tgt[b, :n]] == batch.tgt_words[b]
        assert (batch.src[b, n:] == 0).all() and (batch.tgt[b, n:] == 0).all() and (batch.alignment[b, n:] == -1).all()
        assert (batch.tgt_words[b], batch.alignment[b, :n].tolist()) == translate(batch.src_words[b])
    for name in ("src", "tgt", "src_lengths", "alignment"):
        assert getattr(batch, name).dtype == torch.long


def test_make_batch_from_given_sentences():
    batch = make_batch(0, sentences=[["the", "red", "cars", "run"], ["my", "calm", "cats", "see", "our", "sad", "dogs"]])
    assert batch.src.shape == (2, 7) and batch.src_lengths.tolist() == [4, 7]
    assert batch.alignment[0].tolist() == [0, 2, 1, 3, -1, -1, -1]


def test_alignment_matrix_is_one_hot_per_row():
    alignment = torch.tensor([[0, 2, 1, -1], [3, 1, 0, 2]])
    m = alignment_matrix(alignment, S=4, dtype=torch.float64)
    assert m.shape == (2, 4, 4) and m.dtype == torch.float64
    for b in range(2):
        for t in range(4):
            row = [0.0] * 4
            if alignment[b, t] >= 0:
                row[int(alignment[b, t])] = 1.0
            assert m[b, t].tolist() == row
    assert alignment_matrix(torch.tensor([2, 0])).shape == (2, 3)  # S defaults to the largest index + 1


def _translator(seed=0, **kw):
    torch.manual_seed(seed)
    return CrossAttentionTranslator(**kw)


def test_translator_is_cross_attention_written_out():
    """Queries from target positions, keys from words + positions, values from words, pads masked."""
    model = _translator(embed_dim=8, num_heads=1).double()
    batch = make_batch(5, generator=torch.Generator().manual_seed(1))
    logits, weights = model(batch.src, batch.src_lengths, need_weights=True)
    B, S = batch.src.shape
    mha = model.cross_attention
    words = model.source_embedding.weight[batch.src]  # (B, S, D)
    keys = words + model.source_position.weight[:S]  # (B, S, D)
    queries = model.target_position.weight[:S].expand(B, S, -1)  # (B, L, D)
    q = queries @ mha.W_query.weight.T + mha.W_query.bias  # (B, L, D) @ (D, D) -> (B, L, D)
    k = keys @ mha.W_key.weight.T + mha.W_key.bias  # (B, S, D)
    val = words @ mha.W_value.weight.T + mha.W_value.bias  # (B, S, D)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)  # (B, L, D) @ (B, D, S) -> (B, L, S)
    real = torch.arange(S)[None, :] < batch.src_lengths[:, None]  # (B, S)
    scores = scores.masked_fill(~real[:, None, :], float("-inf"))
    w = torch.softmax(scores, dim=-1)  # (B, L, S)
    out = (w @ val) @ mha.W_out.weight.T + mha.W_out.bias  # (B, L, D)
    torch.testing.assert_close(weights[:, 0], w)
    torch.testing.assert_close(logits, model.readout(out))
    assert logits.shape == (B, S, len(TARGET_VOCAB)) and weights.shape == (B, 1, S, S)


def test_translator_ignores_padded_source_positions():
    model = _translator(num_heads=2)
    batch = make_batch(8, generator=torch.Generator().manual_seed(2))
    logits, weights = model(batch.src, batch.src_lengths, need_weights=True)
    pad = batch.src == 0  # (B, S)
    assert pad.any()
    assert (weights.masked_select(pad[:, None, None, :]) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    scrambled = batch.src.masked_fill(pad, 5)  # put a real word id into every pad slot
    torch.testing.assert_close(model(scrambled, batch.src_lengths), logits)


def test_translator_tgt_len_and_positions_only_queries():
    model = _translator()
    batch = make_batch(3, generator=torch.Generator().manual_seed(3))
    logits, weights = model(batch.src, batch.src_lengths, tgt_len=2, need_weights=True)
    assert logits.shape[:2] == (3, 2) and weights.shape == (3, 1, 2, batch.src.shape[1])
    # The queries know only the target position: the first 2 rows are those of the full-length call.
    full = model(batch.src, batch.src_lengths)
    torch.testing.assert_close(logits, full[:, :2])


def test_cross_attention_learns_the_alignment_quickly():
    """A few dozen Adam steps: the weights land on the right source word, far above uniform."""
    model = _translator(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        batch = make_batch(32, generator=g)
        loss = F.cross_entropy(model(batch.src, batch.src_lengths).flatten(0, 1), batch.tgt.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = make_batch(100, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        logits, weights = model(test.src, test.src_lengths, need_weights=True)
    real = test.alignment >= 0
    on_right = (weights[:, 0] * alignment_matrix(test.alignment, S=test.src.shape[1])).sum(-1)[real]  # (N,)
    assert on_right.mean() > 0.9 > 1 / 4
    assert (logits.argmax(-1)[real] == test.tgt[real]).float().mean() > 0.95


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: translate("the red cars"), TypeError, "words"),
        (lambda: translate(["the", "blue", "cars"]), ValueError, "blue"),
        (lambda: make_batch(0), ValueError, "batch_size"),
        (lambda: make_batch(2.0), TypeError, "batch_size"),
        (lambda: make_batch(1, sentences=[[]]), ValueError, "sentences"),
        (lambda: alignment_matrix(torch.tensor([0.0, 1.0])), TypeError, "alignment"),
        (lambda: alignment_matrix(torch.tensor([0, 5]), S=3), ValueError, "alignment"),
        (lambda: CrossAttentionTranslator(embed_dim=0), ValueError, "embed_dim"),
        (lambda: _translator()(torch.zeros(2, 3), torch.tensor([3, 3])), ValueError, "src"),
        (lambda: _translator()(torch.zeros(2, 9, dtype=torch.long), torch.tensor([9, 9])), ValueError, "max_len"),
        (lambda: _translator()(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3])), ValueError, "src_lengths"),
    ],
)
def test_bad_inputs_name_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_module_exports():
    for name in toy.__all__:
        assert hasattr(toy, name)
