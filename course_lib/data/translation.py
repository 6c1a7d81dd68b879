"""A toy English -> French "translation" with a known word alignment, and a tiny model that learns it.

French puts most adjectives *after* the noun: "the red cars" -> "les voitures rouges". The toy
language has two sentence patterns, and every sentence is translated word by word, with each
adjective-noun pair swapped::

    DET ADJ NOUN VERB                  ->  DET NOUN ADJ VERB
    DET ADJ NOUN VERB DET ADJ NOUN     ->  DET NOUN ADJ VERB DET NOUN ADJ

    "the red cars see my sad dogs"     ->  "les voitures rouges voient mes chiens tristes"

Every target word is the translation of exactly one source word, so the right answer to "which
source word should target position t attend to?" is known: the **alignment**, ``[0, 2, 1, 3, 4,
6, 5]`` for the long pattern. A sentence never repeats a word, so each target word can be read
from exactly one source word. Plural nouns and gender-invariant adjectives keep the French
grammatical: "les" or "mes" never depends on the noun's gender and "rouges" never on the noun.
Every word carries information (even the determiner varies), so no target word can be produced
without looking at its own source word.

:class:`CrossAttentionTranslator` is the smallest model that can learn the task: the decoder's
queries carry nothing but the target position, and one cross-attention layer must learn *where*
in the source to look (a reordering) and its readout *what* the word there means in French.

Shapes use the course's legend: B batch, L target length (queries), S source length (keys and
values), D model size, H heads, V vocabulary size.

Taught in: notebooks/06_cross_attention.ipynb.
Source: the alignment view of attention follows Bahdanau, Cho & Bengio 2015, "Neural Machine
Translation by Jointly Learning to Align and Translate", sec. 3.1 and fig. 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .. import _validate as v
from ..masking import padding_mask
from ..multihead import MultiHeadAttention
from ..transformer import alignment_matrix

__all__ = [
    "PAD",
    "DETERMINERS",
    "NOUNS",
    "ADJECTIVES",
    "INTRANSITIVE_VERBS",
    "TRANSITIVE_VERBS",
    "LEXICON",
    "SOURCE_VOCAB",
    "TARGET_VOCAB",
    "MAX_LEN",
    "translate",
    "sample_sentence",
    "ToyBatch",
    "make_batch",
    "alignment_matrix",
    "CrossAttentionTranslator",
]

#: The padding token (id 0 in both vocabularies).
PAD = "<pad>"
DETERMINERS = ("the", "some", "these", "my", "our")
NOUNS = ("cars", "dogs", "cats", "books", "birds", "trees")
ADJECTIVES = ("red", "yellow", "fast", "calm", "sad", "young")
INTRANSITIVE_VERBS = ("sleep", "run", "sing", "fall")
TRANSITIVE_VERBS = ("see", "like", "follow", "watch")

#: English word -> French word (plural forms; the adjectives have the same form for both genders).
LEXICON = {
    "the": "les", "some": "des", "these": "ces", "my": "mes", "our": "nos",
    "cars": "voitures", "dogs": "chiens", "cats": "chats", "books": "livres", "birds": "oiseaux", "trees": "arbres",
    "red": "rouges", "yellow": "jaunes", "fast": "rapides", "calm": "calmes", "sad": "tristes", "young": "jeunes",
    "sleep": "dorment", "run": "courent", "sing": "chantent", "fall": "tombent",
    "see": "voient", "like": "aiment", "follow": "suivent", "watch": "regardent",
}

#: Source (English) vocabulary; a word's id is its index. Id 0 is the padding token.
SOURCE_VOCAB = (PAD, *DETERMINERS, *NOUNS, *ADJECTIVES, *INTRANSITIVE_VERBS, *TRANSITIVE_VERBS)
#: Target (French) vocabulary, in alphabetical order (so that ids do not mirror the source's). Id 0 is padding.
TARGET_VOCAB = (PAD, *sorted(set(LEXICON.values())))
#: The longest sentence of the toy language, in words (both languages).
MAX_LEN = 7

_SOURCE_ID = {w: i for i, w in enumerate(SOURCE_VOCAB)}
_TARGET_ID = {w: i for i, w in enumerate(TARGET_VOCAB)}


def translate(words: Sequence[str]) -> tuple[list[str], list[int]]:
    """Translate an English word sequence word by word, swapping each adjective-noun pair.

    The rule works on any sequence of lexicon words, not only on the two sentence patterns:
    every adjective immediately followed by a noun changes places with it; every other word
    keeps its position.

    Args:
        words: English words, each a key of :data:`LEXICON`.
    Returns:
        ``(target_words, alignment)``: the French words (as many as the English ones), and for
        each target position t the source position it translates, so that
        ``target_words[t] == LEXICON[words[alignment[t]]]``. The alignment is a permutation.
    Raises:
        TypeError: if words is a str or holds a non-str.
        ValueError: if a word is not in the lexicon.
    Taught in: notebooks/06_cross_attention.ipynb.
    """
    fn = "translate"
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise TypeError(f"{fn}: words must be a list of str (e.g. 'the red cars'.split()), got {words!r}")
    unknown = [w for w in words if w not in LEXICON]
    if unknown:
        raise ValueError(f"{fn}: words {unknown} are not in the lexicon; known words: {sorted(LEXICON)}")
    alignment = list(range(len(words)))
    t = 0
    while t < len(words) - 1:
        if words[t] in ADJECTIVES and words[t + 1] in NOUNS:
            alignment[t], alignment[t + 1] = t + 1, t  # French: noun first, then adjective
            t += 2
        else:
            t += 1
    return [LEXICON[words[s]] for s in alignment], alignment


def sample_sentence(generator: torch.Generator | None = None) -> list[str]:
    """Draw one English sentence of the toy language (each pattern equally likely; no word repeated).

    Args:
        generator: a torch.Generator for reproducible draws (default: torch's global one).
    Returns:
        a list of 4 words ("DET ADJ NOUN VERB") or 7 words ("DET ADJ NOUN VERB DET ADJ NOUN"),
        with two different determiners, adjectives and nouns in the long pattern.
    Taught in: notebooks/06_cross_attention.ipynb.
    """

    def pick(options, k=1):
        order = torch.randperm(len(options), generator=generator)[:k].tolist()
        return [options[i] for i in order]

    if int(torch.randint(2, (1,), generator=generator)) == 0:
        return [*pick(DETERMINERS), *pick(ADJECTIVES), *pick(NOUNS), *pick(INTRANSITIVE_VERBS)]
    (det1, det2), (adj1, adj2), (noun1, noun2) = pick(DETERMINERS, 2), pick(ADJECTIVES, 2), pick(NOUNS, 2)
    return [det1, adj1, noun1, *pick(TRANSITIVE_VERBS), det2, adj2, noun2]


@dataclass
class ToyBatch:
    """A batch of toy sentence pairs, right-padded with id 0.

    Attributes:
        src: source ids, long (B, S), S = the longest source sentence in the batch.
        tgt: target ids, long (B, L), L = S (a translation has as many words as its source).
        src_lengths: long (B,), the number of real source words.
        alignment: long (B, L): the source position each target word translates; -1 at padding.
        src_words, tgt_words: the same sentences as lists of words (without padding).
    Shape:
        src (B, S), tgt (B, L), src_lengths (B,), alignment (B, L).
    """

    src: torch.Tensor
    tgt: torch.Tensor
    src_lengths: torch.Tensor
    alignment: torch.Tensor
    src_words: list[list[str]]
    tgt_words: list[list[str]]


def make_batch(
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    sentences: Sequence[Sequence[str]] | None = None,
) -> ToyBatch:
    """Draw (or encode) a batch of English -> French sentence pairs with their alignments.

    Args:
        batch_size: number of sentence pairs B (ignored when ``sentences`` is given).
        generator: a torch.Generator for reproducible draws.
        device: where the tensors go (default: the CPU).
        sentences: optional English sentences (lists of lexicon words) to encode instead of
            drawing random ones.
    Returns:
        a :class:`ToyBatch`.
    Shape:
        src (B, S), tgt (B, L = S), src_lengths (B,), alignment (B, L).
    Raises:
        TypeError: if batch_size is not an int.
        ValueError: if batch_size is not positive, or a sentence is empty or has an unknown word.
    Taught in: notebooks/06_cross_attention.ipynb.
    """
    fn = "make_batch"
    if sentences is None:
        batch_size = v.positive_int(batch_size, "batch_size", fn)
        sentences = [sample_sentence(generator) for _ in range(batch_size)]
    sentences = [list(s) for s in sentences]
    if not sentences or any(len(s) == 0 for s in sentences):
        raise ValueError(f"{fn}: sentences must be a non-empty list of non-empty word lists")
    pairs = [translate(s) for s in sentences]
    B, S = len(sentences), max(len(s) for s in sentences)
    src = torch.zeros(B, S, dtype=torch.long)
    tgt = torch.zeros(B, S, dtype=torch.long)
    alignment = torch.full((B, S), -1, dtype=torch.long)
    for b, (words, (french, align)) in enumerate(zip(sentences, pairs)):
        n = len(words)
        src[b, :n] = torch.tensor([_SOURCE_ID[w] for w in words])
        tgt[b, :n] = torch.tensor([_TARGET_ID[w] for w in french])
        alignment[b, :n] = torch.tensor(align)
    lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
    return ToyBatch(src.to(device), tgt.to(device), lengths.to(device), alignment.to(device),
                    sentences, [french for french, _ in pairs])


class CrossAttentionTranslator(nn.Module):
    """The smallest translator: position queries, one cross-attention layer over the source, a readout.

    - Encoder side: the keys are ``source_embedding(src) + source_position(0..S-1)`` (what a
      source word is matched on: the word and *where* it stands); the values are
      ``source_embedding(src)`` alone (what it hands over: the word). Keeping positions out of
      the values means the readout cannot tell "les" from "des" by position: it must read the
      word at the right place, so a good translation needs the right alignment.
    - Decoder side (queries): ``target_position(0..L-1)`` only. Each target position asks "which
      source word do I translate?" without knowing any word: a non-autoregressive decoder that
      can only learn *where* to look, which is exactly the alignment.
    - ``cross_attention``: :class:`course_lib.multihead.MultiHeadAttention`, queries from the
      decoder, keys and values from the encoder, padded source words masked with
      ``key_padding_mask``.
    - ``readout``: nn.Linear(D, V_target), the French word at each target position.

    Args:
        embed_dim: model size D.
        num_heads: heads H of the cross-attention (1 gives one readable alignment).
        max_len: the longest sentence (source or target) the position embeddings cover.
    Shape:
        src (B, S) long, src_lengths (B,) -> logits (B, L, V_target), weights (B, H, L, S).
    Raises:
        TypeError / ValueError: for bad sizes (from MultiHeadAttention and nn.Embedding).
    Taught in: notebooks/06_cross_attention.ipynb.
    Source: Bahdanau et al. 2015 (attention as a soft alignment); Vaswani et al. 2017, sec. 3.2.3
    (encoder-decoder attention); learned position embeddings as in Gehring et al. 2017.
    """

    def __init__(self, embed_dim: int = 32, num_heads: int = 1, max_len: int = MAX_LEN) -> None:
        super().__init__()
        fn = "CrossAttentionTranslator"
        embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        self.max_len = v.positive_int(max_len, "max_len", fn)
        self.source_embedding = nn.Embedding(len(SOURCE_VOCAB), embed_dim)
        self.source_position = nn.Embedding(self.max_len, embed_dim)
        self.target_position = nn.Embedding(self.max_len, embed_dim)
        self.cross_attention = MultiHeadAttention(embed_dim, num_heads)
        self.readout = nn.Linear(embed_dim, len(TARGET_VOCAB))

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_len: int | None = None,
                need_weights: bool = False):
        """Translate a batch: logits for the French word at each target position.

        Args:
            src: long tensor (B, S) of source ids (padding: 0, at the end).
            src_lengths: long tensor (B,) of real source lengths; padded positions are masked.
            tgt_len: number of target positions L (default S).
            need_weights: if True, also return the cross-attention weights.
        Returns:
            logits (B, L, V_target); and, if ``need_weights``, weights (B, H, L, S) whose rows
            put zero weight on padded source positions.
        Raises:
            TypeError: if src is not an integer tensor.
            ValueError: if src is not 2-D, is longer than max_len, or src_lengths does not fit.
        """
        fn = "CrossAttentionTranslator.forward"
        v.tensor(src, "src", fn)
        if src.is_floating_point() or src.dtype == torch.bool or src.dim() != 2:
            raise ValueError(f"{fn}: src must be a 2-D integer tensor (B, S) of token ids, got "
                             f"{src.dtype} of shape {v.shape_str(src)}")
        B, S = src.shape
        L = S if tgt_len is None else v.positive_int(tgt_len, "tgt_len", fn)
        if max(S, L) > self.max_len:
            raise ValueError(f"{fn}: sentences of up to max_len={self.max_len} words are supported, got S={S}, L={L}")
        if not isinstance(src_lengths, torch.Tensor) or tuple(src_lengths.shape) != (B,):
            raise ValueError(f"{fn}: src_lengths must be a tensor (B,) = ({B},), got {src_lengths!r}")
        positions = torch.arange(max(S, L), device=src.device)  # (max(S, L),)
        words = self.source_embedding(src)  # (B, S) -> (B, S, D)
        keys = words + self.source_position(positions[:S])  # (B, S, D) + (S, D) -> (B, S, D)
        queries = self.target_position(positions[:L]).expand(B, L, -1)  # (L, D) -> (B, L, D)
        keep = padding_mask(src_lengths, S)  # (B, S), True = real source word
        out, weights = self.cross_attention(queries, keys, words, key_padding_mask=keep,
                                            need_weights=True)  # (B, L, D), (B, H, L, S)
        logits = self.readout(out)  # (B, L, D) @ (D, V) -> (B, L, V)
        if need_weights:
            return logits, weights
        return logits
