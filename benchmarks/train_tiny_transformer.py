"""Training time and test accuracy of chapter 08's tiny transformer on the date task (median of 3 seeds).

The recipe is the lesson's (notebooks/08_tiny_transformer.ipynb, section 4), kept in sync by hand:
the split of seed 0 (20,000 / 1,000 / 1,000 dates), a pre-LN Seq2SeqTransformer with D = 64,
H = 4, two encoder and two decoder layers, F = 128 and sinusoidal positions; Adam, learning rate
3e-3 decayed linearly to 0 over a fixed 300 steps of 64 pairs; one CPU thread. For each training
seed it reports the training time (the 300 steps only), the exact-match accuracy of greedy
decoding on the 1,000 test dates, the first step at which the validation exact match
(teacher-forced, checked every 25 steps) reached 99%, and the alignment score of the best
cross-attention head. Then the medians.

Usage::

    taskset -c 0,1 .venv/bin/python benchmarks/train_tiny_transformer.py [--seeds 0 1 2] [--threads 1]

Not part of the test suite (it trains three models).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib.data.tasks import BOS, DATE_SOURCE_VOCAB, DATE_TARGET_LEN, DATE_TARGET_VOCAB, make_date_splits  # noqa: E402
from course_lib.transformer import (  # noqa: E402
    Seq2SeqTransformer,
    find_alignment_head,
    greedy_decode,
    shift_right,
    teacher_forcing_loss,
)

BOS_ID = DATE_TARGET_VOCAB.index(BOS)
STEPS, BATCH, LR = 300, 64, 3e-3


def build(seed: int, positional: str | None = "sinusoidal") -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    return Seq2SeqTransformer(len(DATE_SOURCE_VOCAB), len(DATE_TARGET_VOCAB), embed_dim=64, num_heads=4,
                              num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128, max_len=16,
                              positional=positional)


@torch.no_grad()
def teacher_forced_exact_match(model, data) -> float:
    model.eval()
    logits = model(data.src, shift_right(data.tgt, BOS_ID), src_key_padding_mask=data.src_key_padding_mask)
    model.train()
    return (logits.argmax(-1) == data.tgt).all(dim=1).float().mean().item()


def train_one(seed: int, train, val, test) -> dict:
    model = build(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / STEPS)
    g = torch.Generator().manual_seed(seed)
    keep = train.src_key_padding_mask
    reached, train_time = None, 0.0
    for step in range(1, STEPS + 1):
        start = time.perf_counter()
        rows = torch.randint(len(train), (BATCH,), generator=g)
        loss = teacher_forcing_loss(model, train.src[rows], train.tgt[rows], BOS_ID, keep[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        train_time += time.perf_counter() - start
        if reached is None and step % 25 == 0 and teacher_forced_exact_match(model, val[:500]) >= 0.99:
            reached = step
    model.eval()
    start = time.perf_counter()
    out = greedy_decode(model, test.src, DATE_TARGET_LEN, BOS_ID, src_key_padding_mask=test.src_key_padding_mask)
    decode_time = time.perf_counter() - start
    accuracy = (out == test.tgt).all(dim=1).float().mean().item()
    with torch.no_grad():
        _, maps = model(test.src, shift_right(test.tgt, BOS_ID), test.src_key_padding_mask, need_weights=True)
    layer, head, score = find_alignment_head(maps.decoder_cross, test.alignment)
    return {"seed": seed, "train_s": train_time, "test_exact_match": accuracy, "steps_to_99": reached,
            "decode_s": decode_time, "best_head": (layer, head), "alignment": score, "final_loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train, val, test = make_date_splits(seed=0, n_train=20000, n_val=1000, n_test=1000)
    print(f"data: {len(train)} / {len(val)} / {len(test)} dates in {time.perf_counter() - start:.2f} s; "
          f"{args.threads} thread(s); {STEPS} steps of {BATCH}")
    results = []
    for seed in args.seeds:
        r = train_one(seed, train, val, test)
        results.append(r)
        print(f"seed {seed}: train {r['train_s']:.1f} s, test exact match {r['test_exact_match']:.1%}, "
              f"val >= 99% at step {r['steps_to_99']}, best cross-attention head {r['best_head']} "
              f"with {r['alignment']:.2f} of its weight on the aligned token, decode 1000 dates {r['decode_s']:.2f} s, "
              f"final loss {r['final_loss']:.4f}")
    print(f"median over {len(results)} seeds: train {statistics.median(r['train_s'] for r in results):.1f} s, "
          f"test exact match {statistics.median(r['test_exact_match'] for r in results):.1%}, "
          f"alignment {statistics.median(r['alignment'] for r in results):.2f}")


if __name__ == "__main__":
    main()
