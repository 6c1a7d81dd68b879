"""The course's running example, with hand-made word vectors a learner can read.

"The cat sat on the mat because it was tired." Which token does "sat" attend to? Which does
"it"? Chapters 01-03 answer with the hand-made vectors below, whose every dimension has a
meaning; chapter 08 answers with a trained toy model and chapter 10 with a real one.

Taught in: notebooks/01_dot_products.ipynb (and reused in 02 and 03); the batch tokenizer at the
end (build_vocab, encode_batch) in notebooks/04_masking.ipynb.
"""

from __future__ import annotations

import re

import torch

__all__ = [
    "SENTENCE",
    "FEATURES",
    "tokenize",
    "embed",
    "sentence_embeddings",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "build_vocab",
    "encode_batch",
]

SENTENCE = "The cat sat on the mat because it was tired."

#: What each dimension of a hand-made embedding means.
FEATURES = ("animate", "object", "action", "place", "pronoun", "state", "function")

# One row per word (lower case). Values are chosen by hand so that the geometry tells a story:
# "it" shares "animate" and "pronoun" signal with "cat", "tired" is a state of animate things,
# "sat" is an action done by an animate subject at a place.
_VECTORS = {
    #            animate object action place pronoun state function
    "the":      (0.0,    0.0,   0.0,   0.0,  0.0,    0.0,  1.0),
    "cat":      (1.0,    0.5,   0.0,   0.0,  0.2,    0.1,  0.0),
    "sat":      (0.6,    0.0,   1.0,   0.5,  0.0,    0.2,  0.0),
    "on":       (0.0,    0.2,   0.0,   0.8,  0.0,    0.0,  0.6),
    "mat":      (0.0,    1.0,   0.0,   0.8,  0.2,    0.0,  0.0),
    "because":  (0.0,    0.0,   0.2,   0.0,  0.0,    0.3,  1.0),
    "it":       (0.7,    0.5,   0.0,   0.0,  1.0,    0.2,  0.2),
    "was":      (0.0,    0.0,   0.4,   0.0,  0.0,    0.6,  0.6),
    "tired":    (0.9,    0.0,   0.1,   0.0,  0.0,    1.0,  0.0),
    ".":        (0.0,    0.0,   0.0,   0.0,  0.0,    0.0,  0.3),
}


def tokenize(text: str) -> list[str]:
    """Split text into words and punctuation marks (a tiny whitespace-and-punctuation tokenizer).

    Args:
        text: a sentence.
    Returns:
        list of tokens, case kept: ``tokenize("The cat sat.") == ["The", "cat", "sat", "."]``.
    Raises:
        TypeError: if text is not a str.
    Taught in: notebooks/01_dot_products.ipynb.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize: text must be a str, got {type(text).__name__}")
    return re.findall(r"\w+|[^\w\s]", text)


def embed(tokens: list[str], dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Look up the hand-made vector of each token (case-insensitive).

    Args:
        tokens: list of T tokens, each a word of :data:`SENTENCE`.
        dtype: floating dtype of the result.  device: torch device (default: the CPU).
    Returns:
        tensor (T, E) with E = len(FEATURES) = 7.
    Shape:
        (T, E)
    Raises:
        TypeError: if tokens is not a list of str.
        ValueError: if a token has no hand-made vector (the message lists the known words).
    Taught in: notebooks/01_dot_products.ipynb.
    """
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("embed: tokens must be a list of str (use tokenize(text) first)")
    unknown = [t for t in tokens if t.lower() not in _VECTORS]
    if unknown:
        raise ValueError(f"embed: no hand-made vector for {unknown}; known words: {sorted(_VECTORS)}")
    rows = [_VECTORS[t.lower()] for t in tokens]
    return torch.tensor(rows, dtype=dtype, device=device)  # (T, E)


def sentence_embeddings(text: str = SENTENCE, dtype: torch.dtype = torch.float32, device=None):
    """Tokens and hand-made embeddings of a sentence (default: the course's running example).

    Returns:
        ``(tokens, x)``: a list of T str and a tensor (T, E), E = 7.
    Taught in: notebooks/01_dot_products.ipynb.
    """
    tokens = tokenize(text)
    return tokens, embed(tokens, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# A tiny word-level tokenizer for batches of sentences (chapter 04: padding masks).
# --------------------------------------------------------------------------------------------

#: The padding token: fills the end of a short sentence so that a batch is rectangular. Id 0.
PAD_TOKEN = "<pad>"
#: The unknown token: stands for any word that is not in the vocabulary. Id 1.
UNK_TOKEN = "<unk>"


def _check_sentences(sentences, fn: str) -> list[str]:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)):
        hint = "; wrap a single sentence in a list: [sentence]" if isinstance(sentences, str) else ""
        raise TypeError(f"{fn}: sentences must be a list of str, got {type(sentences).__name__}{hint}")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TypeError(f"{fn}: sentences[{i}] must be a str, got {type(sentence).__name__}")
    if len(sentences) == 0:
        raise ValueError(f"{fn}: sentences must hold at least one sentence, got an empty list")
    return list(sentences)


def build_vocab(sentences: list[str]) -> dict[str, int]:
    """Give every distinct word of some sentences an integer id, after the two special tokens.

    Ids: ``"<pad>"`` is 0 and ``"<unk>"`` is 1 (see :data:`PAD_TOKEN`, :data:`UNK_TOKEN`); then
    each word, lower-cased, in the order it first appears (words come from :func:`tokenize`,
    so punctuation marks are words too).

    Args:
        sentences: a non-empty list (or tuple) of str.
    Returns:
        dict from token to id, ids 0, 1, ..., V - 1 with no gaps (V = the vocabulary size):
        ``build_vocab(["The cat.", "the dog"]) == {"<pad>": 0, "<unk>": 1, "the": 2, "cat": 3,
        ".": 4, "dog": 5}``.
    Raises:
        TypeError: if sentences is a str (wrap it in a list) or holds something that is not a str.
        ValueError: if sentences is empty.
    Taught in: notebooks/04_masking.ipynb.
    """
    fn = "build_vocab"
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    for sentence in _check_sentences(sentences, fn):
        for token in tokenize(sentence):
            vocab.setdefault(token.lower(), len(vocab))
    return vocab


def encode_batch(sentences: list[str], vocab: dict[str, int]):
    """Turn sentences of different lengths into one right-padded tensor of token ids.

    Each sentence is split with :func:`tokenize`, lower-cased and looked up in ``vocab``
    (a word not in it becomes ``vocab["<unk>"]``). Short sentences are filled up at the end
    (right padding) with ``vocab["<pad>"]`` to the length S of the longest one, so that the
    batch is one rectangular tensor. ``lengths`` says where the real tokens end:
    ``course_lib.masking.padding_mask(lengths, S)`` is True exactly on them.

    Args:
        sentences: a non-empty list (or tuple) of B str; a sentence may be empty ("").
        vocab: dict from token to id, with ``"<pad>"`` and ``"<unk>"`` in it (e.g. from
            :func:`build_vocab`).
    Returns:
        ``(ids, lengths)``: ids, a torch.long tensor (B, S) on the CPU, where
        S = max(longest sentence, 1); and lengths, a torch.long tensor (B,) with the number of
        real tokens of each sentence. ``ids[b, lengths[b]:]`` is all pad ids.
    Shape:
        ids (B, S), lengths (B,)
    Raises:
        TypeError: if sentences is not a list of str, vocab is not a dict, or an id is not an int.
        ValueError: if sentences is empty or vocab lacks "<pad>" or "<unk>".
    Taught in: notebooks/04_masking.ipynb.
    """
    fn = "encode_batch"
    sentences = _check_sentences(sentences, fn)
    if not isinstance(vocab, dict):
        raise TypeError(f"{fn}: vocab must be a dict from token to id (see build_vocab), got {type(vocab).__name__}")
    for special in (PAD_TOKEN, UNK_TOKEN):
        if special not in vocab:
            raise ValueError(f"{fn}: vocab must contain the special token {special!r} (build it with build_vocab)")
    bad = [t for t, i in vocab.items() if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        raise TypeError(f"{fn}: vocab ids must be ints, got {type(vocab[bad[0]]).__name__} for {bad[0]!r}")
    pad, unk = vocab[PAD_TOKEN], vocab[UNK_TOKEN]
    rows = [[vocab.get(token.lower(), unk) for token in tokenize(s)] for s in sentences]
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)  # (B,)
    S = max(int(lengths.max()), 1)
    ids = torch.full((len(rows), S), pad, dtype=torch.long)  # (B, S), all pad to start with
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, lengths
