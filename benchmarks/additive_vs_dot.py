"""Additive (Bahdanau) vs scaled dot-product attention: cost and accuracy, measured side by side.

Two measurements:

1. **Cost of one attention call** (no training): FLOPs counted by ``torch.utils.flop_counter``
   (it counts matrix products; the additive score's elementwise ``add`` and ``tanh`` over the
   (L, S, h) hidden features are not matrix products, so they are counted by hand and printed
   next to it), the size of the largest intermediate tensor, and the median CPU time (one
   thread, ``time.process_time``: robust to other work on a busy machine), for a toy size
   and a long-sequence size.
2. **Accuracy on the toy translation task** (``course_lib.data.translation``): the same tiny
   model (position queries, word + position keys, word values, one attention, a readout;
   the task of chapter 06) with the score function swapped, trained for the same number of
   steps with the same seeds, evaluated every 10 steps on 2,000 held-out sentences: word
   accuracy, sentence accuracy, alignment accuracy (the argmax of the attention weights is
   the source word that the target word translates), and the first step at which word and
   alignment accuracy reach 99%.

Usage::

    python benchmarks/additive_vs_dot.py              # about a minute of CPU time
    python benchmarks/additive_vs_dot.py --steps 30 --seeds 1   # a smoke run

Not part of the test suite: nothing here is asserted; the figures are for the lessons.
Source: Bahdanau et al. 2015, sec. 3.1 and appendix A.1.2 (additive); Vaswani et al. 2017,
sec. 3.2.1 ("dot-product attention is much faster and more space-efficient in practice").
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_lib.attention import AdditiveAttention, scaled_dot_product_attention
from course_lib.data import translation as tr
from course_lib.masking import padding_mask


class DotScore(nn.Module):
    """Single-head scaled dot-product attention with its own query and key projections (D -> h)."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.W_query = nn.Linear(query_dim, hidden_dim, bias=False)
        self.W_key = nn.Linear(key_dim, hidden_dim, bias=False)

    def forward(self, query, key, value, attn_mask=None):
        q, k = self.W_query(query), self.W_key(key)  # (B, L, h), (B, S, h)
        return scaled_dot_product_attention(q, k, value, attn_mask=attn_mask, return_weights=True)


class ToyTranslator(nn.Module):
    """Chapter 06's smallest translator with a pluggable attention (``dot`` or ``additive``)."""

    def __init__(self, kind: str, embed_dim: int = 32, hidden_dim: int = 32) -> None:
        super().__init__()
        self.source_embedding = nn.Embedding(len(tr.SOURCE_VOCAB), embed_dim)
        self.source_position = nn.Embedding(tr.MAX_LEN, embed_dim)
        self.target_position = nn.Embedding(tr.MAX_LEN, embed_dim)
        attention = {"dot": DotScore, "additive": AdditiveAttention}[kind]
        self.attention = attention(embed_dim, embed_dim, hidden_dim)
        self.readout = nn.Linear(embed_dim, len(tr.TARGET_VOCAB))

    def forward(self, src, src_lengths):
        B, S = src.shape
        positions = torch.arange(S)
        words = self.source_embedding(src)  # (B, S, D)
        keys = words + self.source_position(positions)  # (B, S, D)
        queries = self.target_position(positions).expand(B, S, -1)  # (B, L = S, D)
        mask = padding_mask(src_lengths, S)[:, None, :]  # (B, 1, S)
        out, weights = self.attention(queries, keys, words, attn_mask=mask)  # (B, L, D), (B, L, S)
        return self.readout(out), weights


def evaluate(model, test) -> tuple[float, float, float]:
    """Word accuracy, sentence accuracy and alignment accuracy on the test batch."""
    with torch.no_grad():
        logits, weights = model(test.src, test.src_lengths)
    real = test.tgt != 0
    correct = (logits.argmax(-1) == test.tgt) & real
    aligned = (weights.argmax(-1) == test.alignment) & real
    n = real.sum().item()
    return correct.sum().item() / n, (correct | ~real).all(-1).float().mean().item(), aligned.sum().item() / n


def train_and_evaluate(kind: str, seed: int, steps: int, test, every: int = 10) -> dict:
    """Train for ``steps`` steps; evaluate every ``every`` steps (evaluation time not counted)."""
    torch.manual_seed(seed)
    model = ToyTranslator(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1000 + seed)
    cpu_seconds, first_99, first_align = 0.0, None, None
    for step in range(1, steps + 1):
        batch = tr.make_batch(64, generator=g)
        start = time.process_time()
        logits, _ = model(batch.src, batch.src_lengths)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        cpu_seconds += time.process_time() - start
        if step % every == 0:
            word, _, align = evaluate(model, test)
            if first_99 is None and word >= 0.99:
                first_99 = step
            if first_align is None and align >= 0.99:
                first_align = step
    word, sentence, align = evaluate(model, test)
    return {"cpu_s": cpu_seconds, "word_acc": word, "sentence_acc": sentence, "align_acc": align,
            "first_99": first_99, "first_align": first_align,
            "params": sum(p.numel() for p in model.attention.parameters())}


def attention_cost(kind: str, B: int, L: int, S: int, D: int, h: int, repeats: int) -> dict:
    torch.manual_seed(0)
    module = DotScore(D, D, h) if kind == "dot" else AdditiveAttention(D, D, h)
    q, k, v = torch.randn(B, L, D), torch.randn(B, S, D), torch.randn(B, S, D)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            module(q, k, v)
        module(q, k, v)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.process_time()  # CPU time of this process: robust to other processes on the machine
            module(q, k, v)
            times.append(time.process_time() - start)
    # add + tanh on every (l, s, h) feature: 2 B L S h elementwise operations (additive only)
    elementwise = 2 * B * L * S * h if kind == "additive" else 0
    largest = B * L * S * (h if kind == "additive" else 1)  # (B, L, S, h) features vs (B, L, S) scores
    return {"matmul_flops": counter.get_total_flops(), "elementwise": elementwise, "largest": largest,
            "ms": 1000 * statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps per run (batch 64)")
    parser.add_argument("--seeds", type=int, default=3, help="training runs per score function")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: CPU time (time.process_time) then measures the work itself

    print("1. Cost of one attention call (no grad), D = h = 64 features, float32, CPU, 1 thread")
    print(f"{'shape':>26} {'kind':>9} {'matmul FLOPs':>13} {'+ elementwise':>14} {'largest tensor':>15} {'CPU ms':>8}")
    for B, L, S, reps in ((64, 7, 7, 20), (1, 512, 512, 5)):
        rows = {kind: attention_cost(kind, B, L, S, 64, 64, reps) for kind in ("dot", "additive")}
        for kind, r in rows.items():
            print(f"{f'B={B}, L={L}, S={S}':>26} {kind:>9} {r['matmul_flops']:>13.3e} {r['elementwise']:>14.3e} "
                  f"{r['largest']:>15,} {r['ms']:>8.2f}")
        ratio_flops = (rows["additive"]["matmul_flops"] + rows["additive"]["elementwise"]) / rows["dot"]["matmul_flops"]
        print(f"{'':>26} additive / dot: {ratio_flops:.1f}x operations, "
              f"{rows['additive']['ms'] / rows['dot']['ms']:.1f}x time, "
              f"{rows['additive']['largest'] / rows['dot']['largest']:.0f}x largest tensor")

    print(f"\n2. Toy translation (chapter 06), D = h = 32, {args.steps} Adam steps of 64 sentences, "
          f"{args.seeds} seeds; test: 2,000 held-out sentences")
    test = tr.make_batch(2000, generator=torch.Generator().manual_seed(123456))
    print(f"{'kind':>9} {'seed':>4} {'params':>7} {'train CPU s':>11} {'word acc':>9} {'sentence acc':>13} "
          f"{'alignment acc':>14} {'steps to 99% words':>19} {'to 99% alignment':>17}")
    summary = {}
    for kind in ("dot", "additive"):
        for seed in range(args.seeds):
            r = train_and_evaluate(kind, seed, args.steps, test)
            summary.setdefault(kind, []).append(r)
            print(f"{kind:>9} {seed:>4} {r['params']:>7} {r['cpu_s']:>11.2f} {r['word_acc']:>9.3f} "
                  f"{r['sentence_acc']:>13.3f} {r['align_acc']:>14.3f} {str(r['first_99']):>19} "
                  f"{str(r['first_align']):>17}")
    for kind, runs in summary.items():
        mean = lambda key: statistics.mean(r[key] for r in runs)  # noqa: E731
        print(f"{kind:>9} mean: train {mean('cpu_s'):.2f} CPU s, word acc {mean('word_acc'):.3f}, "
              f"sentence acc {mean('sentence_acc'):.3f}, alignment acc {mean('align_acc'):.3f}")
    assert math.isfinite(summary["dot"][0]["word_acc"])


if __name__ == "__main__":
    main()
