"""Synthetic tasks with a known answer for training tiny transformers on a CPU (no download).

Two tasks, both generated in code from a seed:

**Dates** (an encoder-decoder task with a known alignment that reorders): "21 November 2026"
-> "2026-11-21". The source is tokenised as the day's digits (one or two, no leading zero),
the month's name (one token) and the year's four digits; the target is the ten characters of
the ISO date. Every target character has a known source token: the year's digits copy the
last four source tokens (moved from the end to the front), both month digits translate the
month's name, the day's digits copy the first tokens (moved to the end). The two hyphens, and
the leading zero of a one-digit day, come from no source token (alignment -1). Where the year
starts depends on the day's length, so the alignment depends on the content, not only on the
position.

**Coreference** (an encoder-only task around the course's running sentence): "The cat sat on
the mat because it was tired." Which noun does "it" refer to? Here the state decides: an
animal can be tired, hungry, sleepy or scared; a place can be dirty, soft, wet or clean. The
model must output the referent at the position of "it", so it has to find it, and a trained
model's attention from "it" shows where it looked.

Taught in: notebooks/08_tiny_transformer.ipynb.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Sequence

import torch

from .. import _validate as v
from ..masking import padding_mask

__all__ = [
    "PAD",
    "BOS",
    "MONTHS",
    "DATE_SOURCE_VOCAB",
    "DATE_TARGET_VOCAB",
    "DATE_SOURCE_LEN",
    "DATE_TARGET_LEN",
    "FIRST_YEAR",
    "LAST_YEAR",
    "date_pair",
    "DateData",
    "encode_dates",
    "make_date_splits",
    "target_text",
    "ANIMALS",
    "PLACES",
    "VERBS",
    "ANIMAL_STATES",
    "PLACE_STATES",
    "COREF_VOCAB",
    "IT_POSITION",
    "ANIMAL_POSITION",
    "PLACE_POSITION",
    "CorefData",
    "coreference_sentence",
    "encode_coref",
    "make_coref_splits",
]

#: The padding token, id 0 in every vocabulary of this module.
PAD = "<pad>"
#: The start-of-sequence token that the decoder's input begins with.
BOS = "<s>"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_DIGITS = tuple("0123456789")
#: Source tokens of the date task: padding, the ten digits, the twelve month names.
DATE_SOURCE_VOCAB = (PAD, *_DIGITS, *MONTHS)
#: Target tokens of the date task: padding, start token, the ten digits, the hyphen.
DATE_TARGET_VOCAB = (PAD, BOS, *_DIGITS, "-")
#: The longest source (a two-digit day, the month, four year digits) and the target's length.
DATE_SOURCE_LEN, DATE_TARGET_LEN = 7, 10
#: The dates are drawn from these years (inclusive): 730,485 different dates.
FIRST_YEAR, LAST_YEAR = 1000, 2999

_SRC_ID = {t: i for i, t in enumerate(DATE_SOURCE_VOCAB)}
_TGT_ID = {t: i for i, t in enumerate(DATE_TARGET_VOCAB)}
_FIRST_ORDINAL = datetime.date(FIRST_YEAR, 1, 1).toordinal()
_NUM_DATES = datetime.date(LAST_YEAR, 12, 31).toordinal() - _FIRST_ORDINAL + 1


def date_pair(date: datetime.date) -> tuple[list[str], list[str], list[int]]:
    """The source tokens, target characters and alignment of one date.

    Args:
        date: a datetime.date.
    Returns:
        ``(source, target, alignment)``: e.g. for 21 November 2026, source
        ``["2", "1", "November", "2", "0", "2", "6"]``, target ``list("2026-11-21")`` and
        alignment ``[3, 4, 5, 6, -1, 2, 2, -1, 0, 1]``: target character i translates source
        token ``alignment[i]`` (-1: no source token).
    Raises:
        TypeError: if date is not a datetime.date.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    if not isinstance(date, datetime.date):
        raise TypeError(f"date_pair: date must be a datetime.date, got {type(date).__name__}")
    day = str(date.day)  # "1" .. "31", no leading zero
    year = f"{date.year:04d}"
    source = [*day, MONTHS[date.month - 1], *year]
    target = list(f"{year}-{date.month:02d}-{date.day:02d}")
    n = len(day)
    month_at = n
    year_at = [n + 1 + i for i in range(4)]
    day_align = [0, 1] if n == 2 else [-1, 0]  # a one-digit day's leading zero comes from nowhere
    alignment = [*year_at, -1, month_at, month_at, -1, *day_align]
    return source, target, alignment


@dataclass
class DateData:
    """A set of dates, encoded (source right-padded with id 0).

    Attributes:
        src: long (N, 7) source ids.  src_lengths: long (N,), 6 or 7.
        tgt: long (N, 10) target ids (no start token).  alignment: long (N, 10), -1 = none.
        dates: the datetime.date of each row.
    Shape:
        src (N, S=7), src_lengths (N,), tgt (N, L=10), alignment (N, L).
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    alignment: torch.Tensor
    dates: list[datetime.date]

    def __len__(self) -> int:
        return self.src.shape[0]

    @property
    def src_key_padding_mask(self) -> torch.Tensor:
        """bool (N, 7), True for real source tokens."""
        return padding_mask(self.src_lengths, self.src.shape[1])

    def source_tokens(self, i: int) -> list[str]:
        """The source tokens of row i, without padding."""
        return [DATE_SOURCE_VOCAB[t] for t in self.src[i, : int(self.src_lengths[i])].tolist()]

    def to(self, device) -> "DateData":
        """A copy with the tensors on ``device``."""
        return DateData(self.src.to(device), self.src_lengths.to(device), self.tgt.to(device),
                        self.alignment.to(device), list(self.dates))

    def __getitem__(self, index) -> "DateData":
        """Rows ``index`` (a slice, a list or a long tensor of row numbers).

        The Python list of dates is picked from ``index`` as given (a slice, a list, or a tensor
        read on the host), never from its copy on the data's device: a CPU index costs no GPU sync.
        """
        if isinstance(index, int):
            index = [index]
        rows = index if isinstance(index, slice) else torch.as_tensor(index, device=self.src.device)
        if isinstance(index, slice):
            picked = range(len(self))[index]
        else:
            picked = index.tolist() if isinstance(index, torch.Tensor) else [int(i) for i in index]
        return DateData(self.src[rows], self.src_lengths[rows], self.tgt[rows], self.alignment[rows],
                        [self.dates[i] for i in picked])


def encode_dates(dates: Sequence[datetime.date], device: torch.device | str | None = None) -> DateData:
    """Encode dates as id tensors with their alignments.

    Args:
        dates: a non-empty sequence of datetime.date.
        device: where the tensors go (default: the CPU).
    Returns:
        a :class:`DateData`.
    Raises:
        TypeError: if an item is not a datetime.date.  ValueError: if dates is empty.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    dates = list(dates)
    if not dates:
        raise ValueError("encode_dates: dates must hold at least one date")
    src_rows, tgt_rows, align_rows, lengths = [], [], [], []
    for date in dates:
        source, target, align = date_pair(date)
        src_rows.append([_SRC_ID[t] for t in source] + [0] * (DATE_SOURCE_LEN - len(source)))  # right-padded
        tgt_rows.append([_TGT_ID[t] for t in target])
        align_rows.append(align)
        lengths.append(len(source))
    src, tgt = torch.tensor(src_rows), torch.tensor(tgt_rows)  # (N, 7), (N, 10)
    alignment, lengths = torch.tensor(align_rows), torch.tensor(lengths)  # (N, 10), (N,)
    return DateData(src.to(device), lengths.to(device), tgt.to(device), alignment.to(device), dates)


def make_date_splits(seed: int = 0, n_train: int = 20000, n_val: int = 1000, n_test: int = 1000,
                     device: torch.device | str | None = None) -> tuple[DateData, DateData, DateData]:
    """Draw disjoint train, validation and test sets of dates between FIRST_YEAR and LAST_YEAR.

    The dates are a seeded random sample without replacement (a permutation of all 730,485 days,
    cut in three), so no test date is ever seen in training, and the same seed gives the same
    split on every machine.

    Args:
        seed: the split's seed.
        n_train, n_val, n_test: set sizes (positive ints).
        device: where the tensors go.
    Returns:
        ``(train, val, test)``, three :class:`DateData`.
    Raises:
        TypeError / ValueError: for bad sizes, or more dates than exist.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    fn = "make_date_splits"
    sizes = [v.positive_int(n, name, fn) for n, name in ((n_train, "n_train"), (n_val, "n_val"), (n_test, "n_test"))]
    if sum(sizes) > _NUM_DATES:
        raise ValueError(f"{fn}: asked for {sum(sizes)} dates, only {_NUM_DATES} exist")
    g = torch.Generator().manual_seed(seed)
    # a random sample without replacement: random keys, keep the smallest (faster than a full randperm)
    keys = torch.rand(_NUM_DATES, generator=g)
    days = keys.topk(sum(sizes), largest=False).indices.tolist()
    dates = [datetime.date.fromordinal(_FIRST_ORDINAL + d) for d in days]
    a, b = sizes[0], sizes[0] + sizes[1]
    return encode_dates(dates[:a], device), encode_dates(dates[a:b], device), encode_dates(dates[b:], device)


def target_text(ids) -> str:
    """Target ids (a list or 1-D tensor) as text, e.g. ``"2026-11-21"`` (padding and start token dropped)."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return "".join(DATE_TARGET_VOCAB[i] for i in ids if DATE_TARGET_VOCAB[i] not in (PAD, BOS))


# --------------------------------------------------------------------------------------------
# Coreference: "The cat sat on the mat because it was tired."
# --------------------------------------------------------------------------------------------

ANIMALS = ("cat", "dog", "bird", "fox", "mouse", "rabbit")
PLACES = ("mat", "sofa", "rug", "chair", "bed", "floor")
VERBS = ("sat", "slept", "lay")
#: States that only an animal can have ("it" = the animal) ...
ANIMAL_STATES = ("tired", "hungry", "sleepy", "scared")
#: ... and states that only a place can have ("it" = the place).
PLACE_STATES = ("dirty", "soft", "wet", "clean")
#: Vocabulary of the coreference task (lower case; id 0 is padding).
COREF_VOCAB = (PAD, "the", "on", "because", "it", "was", ".", *VERBS, *ANIMALS, *PLACES, *ANIMAL_STATES, *PLACE_STATES)
_COREF_ID = {w: i for i, w in enumerate(COREF_VOCAB)}
#: Position of "it", of the animal and of the place in every sentence of the task.
IT_POSITION, ANIMAL_POSITION, PLACE_POSITION = 7, 1, 5


def coreference_sentence(animal: str, verb: str, place: str, state: str) -> tuple[list[str], str]:
    """One sentence "the ANIMAL VERB on the PLACE because it was STATE ." and the noun "it" refers to.

    Args:
        animal, verb, place, state: words of :data:`ANIMALS`, :data:`VERBS`, :data:`PLACES` and
            :data:`ANIMAL_STATES` + :data:`PLACE_STATES`.
    Returns:
        ``(tokens, referent)``: 11 lower-case tokens, and the animal (for an animal state) or the
        place (for a place state).
    Raises:
        ValueError: if a word is not in its list.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    for word, options, name in ((animal, ANIMALS, "animal"), (verb, VERBS, "verb"), (place, PLACES, "place"),
                                (state, ANIMAL_STATES + PLACE_STATES, "state")):
        if word not in options:
            raise ValueError(f"coreference_sentence: {name} must be one of {options}, got {word!r}")
    tokens = ["the", animal, verb, "on", "the", place, "because", "it", "was", state, "."]
    return tokens, animal if state in ANIMAL_STATES else place


@dataclass
class CorefData:
    """Coreference sentences, encoded: ids (N, 11), and the referent's id and position.

    Attributes:
        ids: long (N, 11).  referent: long (N,), the id of the noun "it" refers to.
        referent_position: long (N,), 1 (the animal) or 5 (the place).  sentences: the tokens.
    """

    ids: torch.Tensor
    referent: torch.Tensor
    referent_position: torch.Tensor
    sentences: list[list[str]]

    def __len__(self) -> int:
        return self.ids.shape[0]


def encode_coref(sentences: Sequence[Sequence[str]], device: torch.device | str | None = None) -> CorefData:
    """Encode sentences of the coreference task (each as returned by :func:`coreference_sentence`).

    Args:
        sentences: lists of 11 lower-case tokens.
        device: where the tensors go.
    Returns:
        a :class:`CorefData`.
    Raises:
        ValueError: if a sentence does not follow the task's pattern.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    rows, referents, positions = [], [], []
    for tokens in sentences:
        tokens = [t.lower() for t in tokens]
        if len(tokens) != 11:
            raise ValueError(f"encode_coref: a sentence must have 11 tokens, got {tokens}")
        _, referent = coreference_sentence(tokens[ANIMAL_POSITION], tokens[2], tokens[PLACE_POSITION], tokens[9])
        rows.append([_COREF_ID[t] for t in tokens])
        referents.append(_COREF_ID[referent])
        positions.append(ANIMAL_POSITION if referent == tokens[ANIMAL_POSITION] else PLACE_POSITION)
    return CorefData(torch.tensor(rows, device=device), torch.tensor(referents, device=device),
                     torch.tensor(positions, device=device), [list(s) for s in sentences])


def make_coref_splits(seed: int = 0, test_fraction: float = 0.25,
                      device: torch.device | str | None = None) -> tuple[CorefData, CorefData]:
    """Every sentence of the task (6 x 3 x 6 x 8 = 864), split at random into train and test.

    Args:
        seed: the split's seed.
        test_fraction: the share of sentences held out, in (0, 1).
        device: where the tensors go.
    Returns:
        ``(train, test)``, two :class:`CorefData`.
    Raises:
        ValueError: if test_fraction is not in (0, 1).
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"make_coref_splits: test_fraction must be a float in (0, 1), got {test_fraction!r}")
    sentences = [coreference_sentence(a, verb, p, s)[0]
                 for a in ANIMALS for verb in VERBS for p in PLACES for s in ANIMAL_STATES + PLACE_STATES]
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = round(test_fraction * len(sentences))
    test = [sentences[i] for i in order[:n_test]]
    train = [sentences[i] for i in order[n_test:]]
    return encode_coref(train, device), encode_coref(test, device)
