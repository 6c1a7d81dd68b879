"""course_lib.data.toy's batch tokenizer: build_vocab and encode_batch (right padding, lengths)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import padding_mask
from course_lib.data.toy import PAD_TOKEN, SENTENCE, UNK_TOKEN, build_vocab, encode_batch, tokenize

# Words with mixed case and punctuation; a sentence is a few of them joined by spaces.
WORDS = ["The", "the", "cat", "Cat", "sat", "on", "mat", "it", "IT", "was", "tired", ".", ",", "dog", "barked!"]
sentence = st.lists(st.sampled_from(WORDS), min_size=0, max_size=9).map(" ".join)
batches = st.lists(sentence, min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_vocab_has_specials_first_then_words_in_first_seen_order(sentences):
    vocab = build_vocab(sentences)
    assert vocab[PAD_TOKEN] == 0 and vocab[UNK_TOKEN] == 1
    assert sorted(vocab.values()) == list(range(len(vocab)))  # ids 0..V-1, no gaps, no repeats
    seen = []  # first-seen order, written independently of the code under test
    for s in sentences:
        for word in s.split():
            for token in ([word[:-1], word[-1]] if word.endswith("!") else [word]):
                if token.lower() not in seen:
                    seen.append(token.lower())
    assert list(vocab)[2:] == seen
    assert all(t == t.lower() for t in vocab)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_encode_batch_round_trips_and_pads_on_the_right(sentences):
    vocab = build_vocab(sentences)
    ids, lengths = encode_batch(sentences, vocab)
    B = len(sentences)
    longest = max(len(tokenize(s)) for s in sentences)
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.shape == (B, max(longest, 1)) and lengths.shape == (B,)
    id_to_token = {i: t for t, i in vocab.items()}
    for b, s in enumerate(sentences):
        tokens = [t.lower() for t in tokenize(s)]
        n = int(lengths[b])
        assert n == len(tokens)
        assert [id_to_token[i] for i in ids[b, :n].tolist()] == tokens  # decodes back to the words
        assert (ids[b, n:] == vocab[PAD_TOKEN]).all()  # right padding with the pad id
    # the padding mask built from the lengths marks exactly the non-pad ids (no word is "<pad>")
    assert torch.equal(padding_mask(lengths, ids.shape[1]), ids != vocab[PAD_TOKEN])


def test_the_chapter_04_batch():
    sentences = [SENTENCE, "The dog barked.", "It was tired."]
    vocab = build_vocab(sentences)
    ids, lengths = encode_batch(sentences, vocab)
    assert lengths.tolist() == [11, 4, 4] and ids.shape == (3, 11)
    assert ids[0, 0] == ids[0, 4] == vocab["the"]  # "The" and "the" share an id
    assert ids[1, :4].tolist() == [vocab["the"], vocab["dog"], vocab["barked"], vocab["."]]
    assert (ids[1:, 4:] == 0).all()


def test_unknown_words_and_custom_special_ids():
    vocab = {"<unk>": 7, "<pad>": 3, "cat": 0}
    ids, lengths = encode_batch(["Cat zebra", "", "cat"], vocab)
    assert ids.tolist() == [[0, 7], [3, 3], [0, 3]]
    assert lengths.tolist() == [2, 0, 1]


def test_all_empty_sentences_still_give_one_column():
    ids, lengths = encode_batch(["", ""], build_vocab(["", ""]))
    assert ids.shape == (2, 1) and lengths.tolist() == [0, 0]
    assert not padding_mask(lengths, 1).any()


GOOD_VOCAB = {PAD_TOKEN: 0, UNK_TOKEN: 1, "cat": 2}


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: build_vocab("The cat."), TypeError, ["sentences", "str", "list"]),
        (lambda: build_vocab(["ok", 3]), TypeError, ["sentences[1]", "int"]),
        (lambda: build_vocab([]), ValueError, ["sentences", "empty"]),
        (lambda: build_vocab(None), TypeError, ["sentences", "NoneType"]),
        (lambda: encode_batch("The cat.", GOOD_VOCAB), TypeError, ["sentences", "str"]),
        (lambda: encode_batch([], GOOD_VOCAB), ValueError, ["sentences", "empty"]),
        (lambda: encode_batch(["cat", b"cat"], GOOD_VOCAB), TypeError, ["sentences[1]", "bytes"]),
        (lambda: encode_batch(["cat"], [("cat", 2)]), TypeError, ["vocab", "list"]),
        (lambda: encode_batch(["cat"], {UNK_TOKEN: 1, "cat": 2}), ValueError, ["vocab", "<pad>"]),
        (lambda: encode_batch(["cat"], {PAD_TOKEN: 0, "cat": 2}), ValueError, ["vocab", "<unk>"]),
        (lambda: encode_batch(["cat"], {PAD_TOKEN: 0, UNK_TOKEN: 1, "cat": 2.0}), TypeError, ["vocab", "float", "'cat'"]),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
