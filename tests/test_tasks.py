"""course_lib.data.tasks: the date task's pairs and alignments, its seeded splits, and the coreference sentences."""

import datetime

import pytest
import torch

from course_lib.data import tasks
from course_lib.data.tasks import (
    DATE_SOURCE_VOCAB,
    DATE_TARGET_VOCAB,
    MONTHS,
    coreference_sentence,
    date_pair,
    encode_coref,
    encode_dates,
    make_coref_splits,
    make_date_splits,
    target_text,
)


def test_the_issue_example():
    source, target, alignment = date_pair(datetime.date(2026, 11, 21))
    assert source == ["2", "1", "November", "2", "0", "2", "6"]
    assert "".join(target) == "2026-11-21"
    assert alignment == [3, 4, 5, 6, -1, 2, 2, -1, 0, 1]
    source, target, alignment = date_pair(datetime.date(1347, 3, 5))
    assert source == ["5", "March", "1", "3", "4", "7"] and "".join(target) == "1347-03-05"
    assert alignment == [2, 3, 4, 5, -1, 1, 1, -1, -1, 0]


@pytest.mark.parametrize("ordinal", torch.randint(0, 730485, (40,), generator=torch.Generator().manual_seed(0)).tolist())
def test_every_aligned_character_comes_from_its_source_token(ordinal):
    date = datetime.date.fromordinal(datetime.date(1000, 1, 1).toordinal() + ordinal)
    source, target, alignment = date_pair(date)
    assert "".join(target) == date.isoformat()
    day = "".join(source[: source.index(MONTHS[date.month - 1])])
    assert (int(day), "".join(source[-4:]), len(source)) == (date.day, f"{date.year:04d}", len(day) + 5)
    for char, a in zip(target, alignment):
        if a < 0:
            assert char in "-0"  # a hyphen, or a one-digit day's leading zero
        elif source[a] in MONTHS:
            assert char in f"{MONTHS.index(source[a]) + 1:02d}"
        else:
            assert char == source[a]  # a copied digit
    assert sorted(a for a in alignment if a >= 0 and source[a] not in MONTHS) == [
        i for i, t in enumerate(source) if t not in MONTHS]  # every digit is copied exactly once


def test_splits_are_seeded_disjoint_and_encoded_consistently():
    train, val, test = make_date_splits(seed=3, n_train=300, n_val=50, n_test=60)
    again = make_date_splits(seed=3, n_train=300, n_val=50, n_test=60)[2]
    assert (len(train), len(val), len(test)) == (300, 50, 60)
    assert torch.equal(test.src, again.src) and test.dates == again.dates
    assert not (set(train.dates) & set(val.dates) or set(train.dates) & set(test.dates) or set(val.dates) & set(test.dates))
    assert make_date_splits(seed=4, n_train=300, n_val=50, n_test=60)[2].dates != test.dates
    for i in range(len(test)):
        date = test.dates[i]
        source, target, alignment = date_pair(date)
        assert test.source_tokens(i) == source and target_text(test.tgt[i]) == date.isoformat()
        assert test.alignment[i].tolist() == alignment
        assert test.src_key_padding_mask[i].sum() == len(source) == test.src_lengths[i]
        assert (test.src[i, len(source):] == 0).all()
    assert test.src.max() < len(DATE_SOURCE_VOCAB) and test.tgt.max() < len(DATE_TARGET_VOCAB)
    assert set(test.src_lengths.tolist()) == {6, 7}
    sub = test[torch.tensor([2, 0])]
    assert sub.dates == [test.dates[2], test.dates[0]] and torch.equal(sub.src, test.src[[2, 0]])
    assert test[:3].dates == test.dates[:3]


def test_target_text_drops_special_tokens():
    bos = DATE_TARGET_VOCAB.index(tasks.BOS)
    ids = encode_dates([datetime.date(2026, 11, 21)]).tgt[0].tolist()
    assert target_text([bos, *ids, 0]) == "2026-11-21"


def test_coreference_sentences():
    tokens, referent = coreference_sentence("cat", "sat", "mat", "tired")
    assert " ".join(tokens) == "the cat sat on the mat because it was tired ."  # the course's running sentence
    assert referent == "cat" and coreference_sentence("cat", "sat", "mat", "dirty")[1] == "mat"
    data = encode_coref([tokens])
    assert data.referent_position.tolist() == [1] and tasks.COREF_VOCAB[int(data.referent)] == "cat"
    assert tasks.COREF_VOCAB[int(data.ids[0, tasks.IT_POSITION])] == "it"
    train, test = make_coref_splits(seed=0)
    assert len(train) + len(test) == 6 * 3 * 6 * 8 and len(test) == 216
    seen = {tuple(s) for s in train.sentences}
    assert not any(tuple(s) in seen for s in test.sentences)
    for i in range(len(test)):
        assert int(test.ids[i, test.referent_position[i]]) == int(test.referent[i])


@pytest.mark.parametrize("call, error, name", [
    (lambda: date_pair("2026-11-21"), TypeError, "date"),
    (lambda: encode_dates([]), ValueError, "dates"),
    (lambda: make_date_splits(n_train=0), ValueError, "n_train"),
    (lambda: coreference_sentence("cat", "sat", "mat", "happy"), ValueError, "state"),
    (lambda: make_coref_splits(test_fraction=1.5), ValueError, "test_fraction"),
])
def test_bad_inputs_name_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
