"""Checks for chapter 08, a tiny transformer: a decoder layer from its parts, the teacher-forcing loss,
greedy decoding, and the head that does the alignment.

The first three exercises take a module (a DecoderLayer or a Seq2SeqTransformer). A check case
cannot hold the module itself (its inputs are shown to the learner, and the batch grader ships
them to a sandbox), so it holds a small *spec*, printed as ``DecoderLayer(embed_dim=16,
num_heads=2, seed=3)``, and the check builds the module from it, with seeded random weights,
right before each call. Building never touches torch's global random generator.

Taught in: solutions/ and exercises/ 08_tiny_transformer.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..transformer import DecoderLayer, Seq2SeqTransformer
from ..transformer import find_alignment_head as _find_alignment_head
from ..transformer import greedy_decode as _greedy_decode
from ..transformer import teacher_forcing_loss as _teacher_forcing_loss
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check

__all__ = ["check_decoder_layer_forward", "check_teacher_forcing_loss", "check_greedy_decode",
           "check_find_alignment_head"]


@contextmanager
def _one_thread():
    """Run the check's tiny models on one CPU thread (restored afterwards).

    Matrices of a few dozen numbers gain nothing from several threads, and on a busy machine the
    threads' synchronisation makes every call many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _randomize(module: torch.nn.Module, seed: int, scale: float) -> None:
    """Overwrite every parameter from a seeded CPU generator (LayerNorm weights around 1)."""
    g = _gen(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "norm" in name and name.endswith("weight"):
                value = 1.0 + 0.3 * noise
            elif "norm" in name:
                value = 0.2 * noise
            elif "embedding" in name:
                value = noise
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 4.0
                value = scale * noise / math.sqrt(fan_in)
            p.copy_(value.to(p.dtype))


# --------------------------------------------------------------------------------------------
# Specs: what a case holds instead of a module.
# --------------------------------------------------------------------------------------------


class DecoderLayerParts(DecoderLayer):
    """A DecoderLayer whose own forward is switched off: the exercise assembles it from the parts."""

    def forward(self, *args, **kwargs):  # noqa: D102
        raise RuntimeError(
            "you called the layer itself (layer(...) or layer.forward(...)); this exercise assembles the forward "
            "pass from the layer's parts: layer.norm1, layer.self_attention, layer.norm2, layer.cross_attention, "
            "layer.norm3, layer.feed_forward"
        )


@dataclass(frozen=True)
class LayerSpec:
    """A pre-LN DecoderLayer with seeded random weights (dropout 0)."""

    embed_dim: int
    num_heads: int
    seed: int
    dtype: torch.dtype = torch.float32

    def build(self, parts_only: bool = False) -> DecoderLayer:
        with torch.random.fork_rng(devices=[]):
            layer = DecoderLayer(self.embed_dim, self.num_heads, 2 * self.embed_dim, norm_first=True)
        layer = layer.to(self.dtype)
        _randomize(layer, self.seed, scale=1.0)
        layer.eval()
        if parts_only:
            layer.__class__ = DecoderLayerParts
        return layer

    def __repr__(self) -> str:
        dtype = "" if self.dtype == torch.float32 else f", dtype={str(self.dtype).replace('torch.', '')}"
        return f"DecoderLayer(embed_dim={self.embed_dim}, num_heads={self.num_heads}, seed={self.seed}{dtype})"


@dataclass(frozen=True)
class ModelSpec:
    """A small pre-LN Seq2SeqTransformer with seeded random weights (dropout 0, eval mode)."""

    src_vocab: int
    tgt_vocab: int
    seed: int
    embed_dim: int = 16
    num_heads: int = 2
    num_decoder_layers: int = 2
    dtype: torch.dtype = torch.float32

    def build(self) -> Seq2SeqTransformer:
        with torch.random.fork_rng(devices=[]):
            model = Seq2SeqTransformer(self.src_vocab, self.tgt_vocab, self.embed_dim, self.num_heads,
                                       num_encoder_layers=1, num_decoder_layers=self.num_decoder_layers,
                                       dim_feedforward=2 * self.embed_dim, max_len=16)
        model = model.to(self.dtype)
        _randomize(model, self.seed, scale=2.0)  # large weights: outputs depend strongly on the inputs
        model.eval()
        return model

    def __repr__(self) -> str:
        dtype = "" if self.dtype == torch.float32 else f", dtype={str(self.dtype).replace('torch.', '')}"
        return (f"Seq2SeqTransformer(src_vocab={self.src_vocab}, tgt_vocab={self.tgt_vocab}, embed_dim={self.embed_dim}, "
                f"num_decoder_layers={self.num_decoder_layers}, seed={self.seed}{dtype})")


def _with_module(impl: Callable, parts_only: bool = False) -> Callable:
    """``impl(module, *rest)`` as a function of ``(spec, *rest)``: builds the module, then calls ``impl``."""

    def call(spec, *rest, **kwargs):
        module = spec.build(parts_only=True) if parts_only else spec.build()
        return impl(module, *rest, **kwargs)

    return call


# --------------------------------------------------------------------------------------------
# Exercise 1: decoder_layer_forward(layer, x, memory, memory_key_padding_mask).
# --------------------------------------------------------------------------------------------


def _decoder_variant(*, residual=(True, True, True), self_causal=True, cross_causal=False, post_ln=False,
                     norm_memory=False, use_padding=True, swap_cross=False):
    def fn(layer, x, memory, memory_key_padding_mask):
        pad = memory_key_padding_mask if use_padding else None
        mem = layer.norm2(memory) if norm_memory else memory

        def sub_self(h):
            return layer.self_attention(h, is_causal=self_causal)

        def sub_cross(h):
            if swap_cross:
                return layer.cross_attention(mem, h, h)  # queries from the memory: (B, S, D)
            return layer.cross_attention(h, mem, mem, key_padding_mask=pad, is_causal=cross_causal)

        blocks = [(layer.norm1, sub_self), (layer.norm2, sub_cross), (layer.norm3, layer.feed_forward)]
        for (norm, sub), keep in zip(blocks, residual):
            if post_ln:
                x = norm(x + sub(x)) if keep else norm(sub(x))
            else:
                x = x + sub(norm(x)) if keep else sub(norm(x))
        return x

    return fn


class LengthMismatchError(RuntimeError):
    """The learner's function runs when L == S but fails when L != S (raised by the check, not by torch)."""


def _guard_lengths(fn: Callable) -> Callable:
    """Report a crash that happens only when L != S as such (not as a broadcasting puzzle).

    Queries taken from the memory (or keys from the decoder) give tensors of the source's length S
    where the target's length L is expected; that fails inside torch only when L != S. When the
    same function runs on the same inputs cut to a common length, the crash is about L != S.
    """

    def guarded(spec, x, memory, memory_key_padding_mask):
        call = _with_module(fn, parts_only=True)  # the learner's fn on a parts-only layer built from spec
        try:
            return call(spec, x, memory, memory_key_padding_mask)
        except NotImplementedError:
            raise
        except Exception as exc:
            L, S = x.shape[1], memory.shape[1]
            if L == S:
                raise
            n = min(L, S)
            try:
                call(spec, x[:, :n].clone(), memory[:, :n].clone(), memory_key_padding_mask[:, :n].clone())
            except Exception:
                raise exc from None
            raise LengthMismatchError(
                f"{type(exc).__name__} with L={L} target and S={S} source tokens, but runs when both are {n}: "
                f"somewhere a tensor of the target's length L meets one of the source's length S (the "
                f"cross-attention's queries come from x, its keys and values from memory)"
            ) from None

    return guarded


def _ref_decoder_layer(layer, x, memory, memory_key_padding_mask):
    return layer(x, memory, memory_key_padding_mask=memory_key_padding_mask)


def check_decoder_layer_forward(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``decoder_layer_forward(layer, x, memory, memory_key_padding_mask)``: a pre-LN decoder layer.

    ``layer`` is a :class:`course_lib.transformer.DecoderLayer` (norm_first=True, dropout 0) whose
    own forward is switched off; ``x`` (B, L, D), ``memory`` (B, S, D), ``memory_key_padding_mask``
    bool (B, S), True for real source tokens -> (B, L, D), equal to the layer's forward.

    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    g = _gen(seed)
    counter = iter(range(1000))

    def case(B, L, S, D=16, H=2, lengths=None, dtype=torch.float32, label=""):
        spec = LayerSpec(D, H, seed * 1000 + next(counter), dtype)
        lengths = [S] * B if lengths is None else lengths
        mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
        return Case((spec, _randn(g, B, L, D, dtype=dtype), _randn(g, B, S, D, dtype=dtype), mask), label=label)

    ex = Exercise(
        "decoder_layer_forward",
        _with_module(_ref_decoder_layer),
        [
            Property("one target sequence reads one source sequence, no padding (B=1, L=3, S=4)", [case(1, 3, 4)]),
            Property("a batch whose sources are padded: padded memory tokens are never read",
                     [case(3, 5, 6, lengths=[6, 2, 4]), case(2, 4, 5, lengths=[3, 5])]),
            Property("L > S, L = S and L < S; 4 heads", [case(2, 6, 3, H=4, lengths=[3, 2]), case(2, 5, 5, lengths=[5, 4]),
                                                        case(1, 2, 7, D=8, H=4)]),
            Property("float64 in, float64 out", [case(2, 4, 5, lengths=[5, 3], dtype=torch.float64)]),
        ],
        [
            Mistake("residual_forgotten", "A residual connection is missing: each sub-layer's output is *added* to "
                    "its input, x = x + sublayer(norm(x)); replacing x by the sub-layer's output loses what x carried.",
                    _with_module(_decoder_variant(residual=(False, True, True)))),
            Mistake("residual_forgotten", "A residual connection is missing: each sub-layer's output is *added* to "
                    "its input, x = x + sublayer(norm(x)); replacing x by the sub-layer's output loses what x carried.",
                    _with_module(_decoder_variant(residual=(True, False, True)))),
            Mistake("residual_forgotten", "A residual connection is missing: each sub-layer's output is *added* to "
                    "its input, x = x + sublayer(norm(x)); replacing x by the sub-layer's output loses what x carried.",
                    _with_module(_decoder_variant(residual=(True, True, False)))),
            Mistake("self_attention_not_causal", "The decoder's self-attention is not causal: target position i "
                    "must not see target positions after i (pass is_causal=True to layer.self_attention).",
                    _with_module(_decoder_variant(self_causal=False))),
            Mistake("cross_attention_made_causal", "Your cross-attention is causal: target position i may read "
                    "*every* real source token (the whole source is known before decoding starts). Only the "
                    "self-attention is causal; the cross-attention masks the source's padding only.",
                    _with_module(_decoder_variant(cross_causal=True))),
            Mistake("padding_mask_ignored", "The cross-attention reads padded source tokens: pass "
                    "key_padding_mask=memory_key_padding_mask to layer.cross_attention.",
                    _with_module(_decoder_variant(use_padding=False))),
            Mistake("post_ln", "You normalised after the residual addition (post-LN, x = norm(x + sublayer(x))); "
                    "this layer is pre-LN: x = x + sublayer(norm(x)), the residual stream itself is never normalised.",
                    _with_module(_decoder_variant(post_ln=True))),
            Mistake("memory_normalized", "You normalised the memory with layer.norm2: norm2 is for the decoder's "
                    "queries (x); the keys and values are the encoder's output as it is.",
                    _with_module(_decoder_variant(norm_memory=True))),
            Mistake("cross_attention_swapped", "Your cross-attention takes its queries from the memory: the decoder "
                    "asks, so layer.cross_attention(norm2(x), memory, memory), one output row per target position.",
                    _with_module(_decoder_variant(swap_cross=True))),
        ],
    )
    with _one_thread():
        return run_check(ex, _guard_lengths(fn) if callable(fn) else fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: teacher_forcing_loss(model, src, tgt, bos_id).
# --------------------------------------------------------------------------------------------


def _loss_variant(*, shift="right", targets="tgt", reduction="mean"):
    def fn(model, src, tgt, bos_id):
        start = torch.full_like(tgt[:, :1], bos_id)  # (B, 1)
        if shift == "none":
            tgt_in, goal = tgt, tgt
        elif shift == "no_start":
            tgt_in, goal = tgt[:, :-1], tgt[:, 1:]
        else:
            tgt_in = torch.cat([start, tgt[:, :-1]], dim=1)  # (B, L)
            goal = tgt if targets == "tgt" else tgt_in
        logits = model(src, tgt_in)  # (B, L, V)
        return F.cross_entropy(logits.flatten(0, 1), goal.flatten(), reduction=reduction)

    return fn


def check_teacher_forcing_loss(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``teacher_forcing_loss(model, src, tgt, bos_id)`` -> 0-d mean cross-entropy.

    ``model`` is a :class:`course_lib.transformer.Seq2SeqTransformer`; ``src`` long (B, S),
    ``tgt`` long (B, L). The decoder reads ``[bos, tgt[:, :-1]]`` and position i is scored
    against ``tgt[:, i]``; the mean is over all B * L target tokens.

    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    g = _gen(seed)
    counter = iter(range(1000))

    def case(B, S, L, Vs=9, Vt=8, dtype=torch.float32, label=""):
        spec = ModelSpec(Vs, Vt, seed * 1000 + next(counter), dtype=dtype)
        src = torch.randint(1, Vs, (B, S), generator=g)
        tgt = torch.randint(2, Vt, (B, L), generator=g)
        return Case((spec, src, tgt, 1), label=label)

    ex = Exercise(
        "teacher_forcing_loss",
        _with_module(lambda model, src, tgt, bos_id: _teacher_forcing_loss(model, src, tgt, bos_id)),
        [
            Property("one pair, a 3-token target", [case(1, 4, 3)]),
            Property("a batch, S != L", [case(4, 5, 7), case(3, 6, 2)]),
            Property("a one-token target (L = 1): the decoder reads only the start token", [case(2, 3, 1)]),
            Property("a float64 model gives a float64 loss", [case(2, 4, 5, dtype=torch.float64)]),
        ],
        [
            Mistake("no_shift", "The decoder reads the target itself: at position i it sees the token it must predict, "
                    "so it learns to copy its input. Feed [bos, y0, ..., y_{L-2}] (shifted right) and score against "
                    "[y0, ..., y_{L-1}].", _with_module(_loss_variant(shift="none"))),
            Mistake("targets_shifted", "Off by one in the targets: you scored each position against the token it "
                    "reads (the shifted input); position i reads bos, y0..y_{i-1} and must predict y_i, i.e. tgt[:, i].",
                    _with_module(_loss_variant(targets="input"))),
            Mistake("start_token_missing", "You shifted the GPT way (input tgt[:, :-1], targets tgt[:, 1:]): the first "
                    "target token is never predicted and the start token is never read. Prepend bos_id: the input is "
                    "[bos, tgt[:, :-1]] and every token of tgt is a target.", _with_module(_loss_variant(shift="no_start"))),
            Mistake("sum_not_mean", "You summed the token losses; average them (the default reduction of "
                    "F.cross_entropy), so the loss does not grow with the batch size and length.",
                    _with_module(_loss_variant(reduction="sum"))),
        ],
    )
    with _one_thread():
        return run_check(ex, _with_module(fn) if callable(fn) else fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: greedy_decode(model, src, max_len, bos_id).
# --------------------------------------------------------------------------------------------


def _decode_variant(*, steps_delta=0, keep_bos=False, position=-1, causal=True, feed_back=True):
    @torch.no_grad()
    def fn(model, src, max_len, bos_id):
        memory = model.encode(src)  # (B, S, D)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)  # (B, 1)
        for _ in range(max_len + steps_delta):
            tgt_in = out if feed_back else out[:, :1]
            logits = model.decode(tgt_in, memory, tgt_is_causal=causal)  # (B, t, V)
            out = torch.cat([out, logits[:, position].argmax(-1)[:, None]], dim=1)
        return out if keep_bos else out[:, 1:]

    return fn


def _compare_ids(got: Any, expected: torch.Tensor) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"returned {type(got).__name__}, expected a torch.Tensor of token ids"
    if got.is_floating_point() or got.is_complex() or got.dtype == torch.bool:
        return f"returned dtype {got.dtype}, expected an integer tensor of token ids (torch.long)"
    if tuple(got.shape) != tuple(expected.shape):
        return f"returned shape {tuple(got.shape)}, expected {tuple(expected.shape)} (B, max_len)"
    if got.device != expected.device:
        return f"returned a tensor on {got.device}, expected {expected.device}"
    wrong = (got.long() != expected).nonzero()
    if len(wrong):
        b, t = wrong[0].tolist()
        return f"token {t} of sequence {b} is {int(got[b, t])}, expected {int(expected[b, t])}"
    return None


_STUCK = ("Every token you generate is predicted from the start token alone (under the causal mask, the first "
          "position sees nothing else): take the *last* position's logits, logits[:, -1], of the decoder run on the "
          "whole sequence so far (the start token and every token appended since).")


def check_greedy_decode(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``greedy_decode(model, src, max_len, bos_id)`` -> long (B, max_len), without the start token.

    ``model`` is a :class:`course_lib.transformer.Seq2SeqTransformer` (two decoder layers, eval
    mode); ``src`` long (B, S). Each step runs the decoder on ``[bos, generated so far]`` (causal
    mask on) and appends the argmax of the last position's logits.

    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    with _one_thread():
        return run_check(_greedy_exercise(seed), _with_module(fn) if callable(fn) else fn, device=device)


@lru_cache(maxsize=4)
def _greedy_exercise(seed: int) -> Exercise:
    """The greedy-decoding exercise at ``seed`` (cached: choosing its models takes a few dozen decodes)."""
    g = _gen(seed)
    counter = iter(range(100000))
    reference = _decode_variant()
    telltales = (_decode_variant(causal=False), _decode_variant(position=0))

    def case(B, S, max_len, Vs=9, Vt=10, label=""):
        src = torch.randint(1, Vs, (B, S), generator=g)
        for _ in range(100):  # a model on which the telltale mistakes change the output (random models can be dull)
            spec = ModelSpec(Vs, Vt, seed * 100000 + next(counter))
            if max_len == 1:
                break
            model = spec.build()
            outputs = [variant(model, src, max_len, 1) for variant in (reference, *telltales)]
            if all(not torch.equal(a, b) for k, a in enumerate(outputs) for b in outputs[k + 1:]):
                break  # the right answer and each telltale mistake all differ
        return Case((spec, src, max_len, 1), label=label)

    ex = Exercise(
        "greedy_decode",
        _with_module(lambda model, src, max_len, bos_id: _greedy_decode(model, src, max_len, bos_id)),
        [
            Property("one source, 4 tokens generated", [case(1, 5, 4)]),
            Property("a batch: each sequence decoded on its own", [case(8, 4, 6), case(8, 6, 5)]),
            Property("max_len = 1: one step", [case(2, 3, 1)]),
            Property("longer outputs than inputs (max_len > S)", [case(8, 3, 8), case(6, 2, 9)]),
        ],
        [
            Mistake("start_token_kept", "Your result starts with the start token: return only the max_len generated "
                    "tokens (drop column 0).", _with_module(_decode_variant(keep_bos=True))),
            Mistake("one_token_short", "Off by one: you generated max_len - 1 tokens; run max_len steps, one token each.",
                    _with_module(_decode_variant(steps_delta=-1))),
            Mistake("one_token_short", "Off by one: you generated max_len - 1 tokens; run max_len steps, one token each.",
                    _with_module(_decode_variant(steps_delta=-1, keep_bos=True))),
            Mistake("stuck_on_first_position", _STUCK, _with_module(_decode_variant(position=0))),
            Mistake("no_causal_mask", "You decoded without the causal mask (tgt_is_causal=False). The model was "
                    "trained with it: when the prefix is recomputed, earlier positions must still not see later "
                    "tokens, or their states (and, through the next layer, the last position) change.",
                    _with_module(_decode_variant(causal=False))),
            Mistake("stuck_on_first_position", _STUCK, _with_module(_decode_variant(feed_back=False))),
        ],
        compare=_compare_ids,
    )
    return ex


# --------------------------------------------------------------------------------------------
# Exercise 4: find_alignment_head(cross_weights, alignment).
# --------------------------------------------------------------------------------------------


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value)
    return None


def _as_float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def _compare_head(got: Any, expected: tuple) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"returned {type(got).__name__}, expected a tuple (layer, head, score)"
    layer, head, score = _as_int(got[0]), _as_int(got[1]), _as_float(got[2])
    if layer is None or head is None:
        return f"layer and head must be ints, got {type(got[0]).__name__} and {type(got[1]).__name__}"
    if score is None:
        return f"score must be a number, got {type(got[2]).__name__}"
    if (layer, head) != tuple(expected[:2]):
        return f"returned (layer, head) = ({layer}, {head}), expected ({expected[0]}, {expected[1]})"
    if not math.isclose(score, expected[2], rel_tol=1e-4, abs_tol=1e-6):
        return f"returned score {score:.4f}, expected {expected[2]:.4f}"
    return None


def _head_variant(*, unaligned="skip", measure="weight", order="layer_head", reduce="mean"):
    def fn(cross_weights, alignment):
        N, B, H, L, S = cross_weights.shape
        if unaligned == "clamp":
            index, keep = alignment.clamp(min=0), torch.ones_like(alignment, dtype=torch.bool)
        elif unaligned == "wrap":
            index, keep = alignment % S, torch.ones_like(alignment, dtype=torch.bool)
        else:
            index, keep = alignment.clamp(min=0), alignment >= 0
        if measure == "weight":
            picked = cross_weights.gather(-1, index[None, :, None, :, None].expand(N, B, H, L, 1))[..., 0]  # (N, B, H, L)
        else:
            picked = (cross_weights.argmax(-1) == index[None, :, None, :]).to(cross_weights.dtype)  # (N, B, H, L)
        picked = picked.permute(0, 2, 1, 3)[:, :, keep]  # (N, H, n)
        scores = picked.mean(-1) if reduce == "mean" else picked.sum(-1)  # (N, H)
        best = int(scores.flatten().argmax())
        layer, head = best // H, best % H
        first, second = (layer, head) if order == "layer_head" else (head, layer)
        return first, second, float(scores[layer, head])

    return fn


def check_find_alignment_head(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_alignment_head(cross_weights, alignment)`` -> ``(layer, head, score)``.

    ``cross_weights`` (N, B, H, L, S): the cross-attention weights of N decoder layers;
    ``alignment`` long (B, L): the source position of each target token, -1 where none. The score
    of a head is its mean weight on the aligned source token, over the aligned positions only; the
    result is the best head's layer, head and score.

    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    g = _gen(seed)

    def case(N, B, H, L, S, best, unaligned=0.3, sharp=4.0, dtype=torch.float32, label=""):
        alignment = torch.randint(0, S, (B, L), generator=g)
        alignment[torch.rand(B, L, generator=g) < unaligned] = -1
        alignment[:, 0] = torch.randint(0, S, (B,), generator=g)  # at least one aligned position per row
        scores = _randn(g, N, B, H, L, S, dtype=torch.float64)
        ideal = (alignment.clamp(min=0)[..., None] == torch.arange(S)).double()  # (B, L, S)
        focus = torch.rand(N, H, generator=g, dtype=torch.float64) * 2.0  # every head partly aligned
        focus[best] = sharp
        scores = scores + focus[:, None, :, None, None] * ideal[None, :, None]  # (N, B, H, L, S)
        # where nothing is aligned, all heads stare at source token 0 (a trap for counting those rows)
        trap = (alignment < 0)[None, :, None, :, None] & (torch.arange(S) == 0)
        scores = scores + 6.0 * trap
        weights = torch.softmax(scores, dim=-1).to(dtype)
        return Case((weights, alignment), label=label)

    hand_w = torch.tensor([[[[[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]],
                             [[0.1, 0.1, 0.8], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05]]]]])  # (1, 1, 2, 3, 3)
    hand_a = torch.tensor([[0, 1, -1]])
    ex = Exercise(
        "find_alignment_head",
        lambda cross_weights, alignment: _find_alignment_head(cross_weights, alignment),
        [
            Property("a hand-made example: head 0 puts 0.8 and 0.6 on the right tokens -> (0, 0, 0.7)", [Case((hand_w, hand_a))]),
            Property("the aligned head hides among 2 layers x 4 heads; unaligned positions (-1) are left out",
                     [case(2, 3, 4, 5, 6, (1, 2)), case(2, 2, 4, 6, 4, (0, 3))]),
            Property("the best head can be anywhere (first layer, last head, ...)",
                     [case(3, 2, 2, 4, 5, (2, 0)), case(1, 4, 3, 3, 7, (0, 2)), case(3, 1, 4, 6, 3, (1, 1))]),
            Property("float64 weights", [case(2, 2, 3, 5, 5, (1, 0), dtype=torch.float64)]),
        ],
        [
            Mistake("unaligned_positions_counted", "You counted the unaligned target positions (alignment -1): leave "
                    "them out of the mean (an index of -1 picks the *last* source token, and clamping it to 0 picks "
                    "the first; neither is where that token came from).", _head_variant(unaligned="clamp")),
            Mistake("unaligned_positions_counted", "You counted the unaligned target positions (alignment -1): leave "
                    "them out of the mean (an index of -1 picks the *last* source token, and clamping it to 0 picks "
                    "the first; neither is where that token came from).", _head_variant(unaligned="wrap")),
            Mistake("accuracy_instead_of_weight", "You scored each head by how often its largest weight is on the "
                    "right token; the score asked for is the mean *weight* on the right source token.",
                    _head_variant(measure="argmax")),
            Mistake("layer_head_swapped", "You returned (head, layer): the answer is (layer, head, score), the "
                    "layer index first.", _head_variant(order="head_layer")),
            Mistake("sum_not_mean", "You summed the weights over the aligned positions; average them so the "
                    "score is a fraction in [0, 1].", _head_variant(reduce="sum")),
        ],
        compare=_compare_head,
    )
    with _one_thread():
        return run_check(ex, fn, device=device)
