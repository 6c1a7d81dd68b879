"""The course's running example, with hand-made word vectors a learner can read.

"The cat sat on the mat because it was tired." Which token does "sat" attend to? Which does
"it"? Chapters 01-03 answer with the hand-made vectors below, whose every dimension has a
meaning; chapter 08 answers with a trained toy model and chapter 10 with a real one.

Taught in: notebooks/01_dot_products.ipynb (and reused in 02 and 03).
"""

from __future__ import annotations

import re

import torch

__all__ = ["SENTENCE", "FEATURES", "tokenize", "embed", "sentence_embeddings"]

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
