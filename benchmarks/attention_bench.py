"""Attention benchmark (chapter 09): course_lib's attention, tiled attention and the KV cache vs PyTorch.

Every figure is a *ratio* of two things measured side by side in the same run: the two calls
alternate within each repetition (the order rotates), each repetition gives one ratio, and the
table shows the median ratio over the repetitions. Ratios measured this way survive a machine
that is slower or busier than another, which absolute times do not.

Figures and targets (chapter 09's issue):

1. ``course_lib.scaled_dot_product_attention`` (materialises the weights) / torch's
   ``F.scaled_dot_product_attention`` under the MATH backend (the same algorithm): <= 1.2x.
   Also against torch's default backend (the fused flash kernel on CPU), no target.
2. ``course_lib.efficient.tiled_attention`` / torch's default fused kernel: <= 1.5x; and
   torch MATH / tiled_attention (how much faster the tiled loop is than the math backend).
   Both at (B=8, H=12, L=S=1024, E=64) float32, and for L = 256 .. 4096 (above L = 1024 the
   batch shrinks so that the naive (L, S) weights stay near 400 MB per call: B=2 at 2048, B=1
   at 4096; the table names the shape of every row).
3. Peak extra memory of tiled vs naive (course_lib) attention at L = 8192 (B=1, H=4, E=64):
   <= 1/10. On CPU: in a fresh process per measurement, the resident memory just before the
   call is read (VmRSS), the peak is reset (``echo 5 > /proc/self/clear_refs``, Linux) and read
   after the call (VmHWM); without clear_refs, ``ru_maxrss`` is used; the deterministic byte count of
   ``course_lib.efficient.MemoryTracker`` is shown next to it. On CUDA:
   ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.
4. Generating 512 tokens with a KV cache (``decode_step``) vs recomputing causal attention over
   the whole prefix at every step (one attention layer with Q/K/V projections, D=768, H=12,
   a 64-token prompt): >= 5x faster. The outputs are checked equal first.

Usage::

    .venv/bin/python benchmarks/attention_bench.py            # the full table (a few minutes on 2 cores)
    .venv/bin/python benchmarks/attention_bench.py --quick    # a smoke run with small shapes (under a minute)
    .venv/bin/python benchmarks/attention_bench.py --device cuda --json out.json

Writes the table as JSON (default: build/bench/attention_bench_<device>.json, as ``make bench``).
Not part of the test suite: timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.attention import scaled_dot_product_attention as naive_attention  # noqa: E402
from course_lib.efficient import KVCache, MemoryTracker, decode_step, tiled_attention  # noqa: E402


# --------------------------------------------------------------------------------------------
# Timing: paired ratios, median over repetitions.
# --------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_ratios(fns: dict, pairs: list[tuple[str, str]], reps: int, device: torch.device) -> dict:
    """Run every function once per repetition (rotating order); return the median of each a/b ratio."""
    names = list(fns)
    for name in names:  # warm-up: allocator, thread pool, kernel selection
        fns[name]()
    _sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    result = {"median_seconds": {n: statistics.median(t) for n, t in times.items()}}
    result["ratios"] = {
        f"{a}/{b}": statistics.median(ta / tb for ta, tb in zip(times[a], times[b])) for a, b in pairs
    }
    return result


def _inputs(B, H, L, E, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, E, generator=g).to(device) for _ in range(3)]


def bench_speed(B, H, L, E, reps, device, block_size) -> dict:
    q, k, v = _inputs(B, H, L, E, device)
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(tiled_attention(q, k, v, block_size=block_size), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(naive_attention(q, k, v), ref, rtol=1e-5, atol=1e-5)

    def math_backend():
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)

    fns = {
        "course_lib": lambda: naive_attention(q, k, v),
        "torch_math": math_backend,
        "torch_default": lambda: F.scaled_dot_product_attention(q, k, v),
        "tiled": lambda: tiled_attention(q, k, v, block_size=block_size),
    }
    pairs = [("course_lib", "torch_math"), ("course_lib", "torch_default"),
             ("tiled", "torch_default"), ("torch_math", "tiled")]
    return paired_ratios(fns, pairs, reps, device)


# --------------------------------------------------------------------------------------------
# Memory: one fresh process per measurement on CPU; the CUDA allocator's peak on a GPU.
# --------------------------------------------------------------------------------------------


def _run_method(method: str, q, k, v, block_size: int):
    if method == "naive":
        return naive_attention(q, k, v)
    if method == "tiled":
        return tiled_attention(q, k, v, block_size=block_size)
    if method == "torch_default":
        return F.scaled_dot_product_attention(q, k, v)
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


_BASELINE_MAXRSS = 0


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_now_and_reset_peak() -> tuple[int, bool]:
    """(resident bytes now, whether the peak was reset). Linux: writing 5 to clear_refs resets VmHWM."""
    global _BASELINE_MAXRSS
    _BASELINE_MAXRSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    now = _status_kib("VmRSS")
    return (now * 1024 if now is not None else _BASELINE_MAXRSS), reset


def _peak_rss() -> int:
    peak = _status_kib("VmHWM")
    return peak * 1024 if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_child(method: str, B: int, H: int, L: int, E: int, block_size: int, tracked: bool) -> None:
    """Runs in a fresh process: prints the peak extra memory of one call, in bytes, as JSON."""
    q, k, v = _inputs(B, H, L, E, torch.device("cpu"))
    small = [t[..., :64, :].contiguous() for t in (q, k, v)]
    _run_method(method, *small, block_size)  # warm-up: load kernels, start the thread pool
    if tracked:
        with MemoryTracker() as tracker:
            out = _run_method(method, q, k, v, block_size)
        print(json.dumps({"bytes": tracker.peak}))
        return
    before, reset = _rss_now_and_reset_peak()
    out = _run_method(method, q, k, v, block_size)
    after = _peak_rss()
    if not reset:  # no /proc/self/clear_refs: ru_maxrss is a high-water mark of the whole process
        before = max(before, _BASELINE_MAXRSS)
    del out
    print(json.dumps({"bytes": max(0, after - before), "peak_reset": reset}))


def peak_extra_memory(method, B, H, L, E, device, block_size, tracked=False) -> int:
    if device.type == "cuda":
        q, k, v = _inputs(B, H, L, E, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = _run_method(method, q, k, v, block_size)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out, q, k, v
        return peak
    cmd = [sys.executable, __file__, "--_memory-child", method, str(B), str(H), str(L), str(E), str(block_size),
           "1" if tracked else "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])["bytes"]


# --------------------------------------------------------------------------------------------
# KV cache: generation with and without it.
# --------------------------------------------------------------------------------------------


def bench_decode(new_tokens, prompt, D, H, reps, device) -> dict:
    g = torch.Generator().manual_seed(0)
    E = D // H
    W_query, W_key, W_value = (torch.randn(D, D, generator=g).div_(math.sqrt(D)).to(device) for _ in range(3))
    x = torch.randn(1, prompt + new_tokens, D, generator=g).to(device)  # the tokens' vectors, fixed in advance

    def heads(t):  # (1, T, D) -> (1, H, T, E)
        return t.view(1, -1, H, E).transpose(1, 2)

    def project(xt):
        return heads(xt @ W_query), heads(xt @ W_key), heads(xt @ W_value)  # (1, T, D) @ (D, D) -> (1, H, T, E)

    def recompute():
        outs = []
        for t in range(prompt, prompt + new_tokens):
            q, k, v = project(x[:, : t + 1])  # every step: all t + 1 tokens again
            outs.append(naive_attention(q, k, v, is_causal=True)[:, :, -1:])  # keep the newest row
        return torch.cat(outs, dim=2)

    def cached():
        cache = KVCache()
        decode_step(*project(x[:, :prompt]), cache)  # the prompt, once
        outs = [decode_step(*project(x[:, t:t + 1]), cache) for t in range(prompt, prompt + new_tokens)]
        return torch.cat(outs, dim=2)

    torch.testing.assert_close(cached(), recompute(), rtol=1e-4, atol=1e-5)
    return paired_ratios({"recompute": recompute, "kv_cache": cached}, [("recompute", "kv_cache")], reps, device)


# --------------------------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repetitions (a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 7, quick 3)")
    parser.add_argument("--block-size", type=int, default=256, help="keys per block in tiled_attention")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="where to write the table as JSON")
    parser.add_argument("--_memory-child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_child:
        method, *numbers, tracked = args._memory_child
        _memory_child(method, *map(int, numbers), tracked == "1")
        return

    device = torch.device(args.device)
    reps = args.reps or (3 if args.quick else 7)
    E = 64
    if args.quick:
        main_shape = (2, 4, 256)
        sweep = [(2, 4, 128)]
        memory_shape, new_tokens, decode_reps = (1, 2, 1024), 32, 3
    else:
        main_shape = (8, 12, 1024)
        sweep = [(8, 12, 256), (8, 12, 512), (2, 12, 2048), (1, 12, 4096)]
        memory_shape, new_tokens, decode_reps = (1, 4, 8192), 512, 3
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.time()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{_cpu_name()}, {torch.get_num_threads()} threads"

    rows = []

    def add(figure, config, value, target=None, better="lower", unit="x"):
        if args.quick:
            target = None  # the targets are for the full shapes, not the smoke run's
        ok = None
        if target is not None:
            ok = value <= target if better == "lower" else value >= target
        rows.append({"figure": figure, "config": config, "value": value, "unit": unit,
                     "target": target, "better": better, "meets_target": ok})

    speed = {}
    for B, H, L in sorted({main_shape, *sweep}, key=lambda s: s[2]):
        config = f"B={B} H={H} L=S={L} E={E}"
        print(f"timing {config} ...", flush=True)
        speed[config] = res = bench_speed(B, H, L, E, reps, device, args.block_size)
        main = (B, H, L) == main_shape
        r = res["ratios"]
        add("course_lib SDPA / torch MATH", config, r["course_lib/torch_math"], 1.2 if main else None)
        add("course_lib SDPA / torch default (fused)", config, r["course_lib/torch_default"])
        add("tiled_attention / torch default (fused)", config, r["tiled/torch_default"], 1.5 if main else None)
        add("torch MATH / tiled_attention (speed-up)", config, r["torch_math/tiled"], None, better="higher")

    B, H, L = memory_shape
    config = f"B={B} H={H} L=S={L} E={E}"
    print(f"memory {config} ...", flush=True)
    memory = {m: peak_extra_memory(m, B, H, L, E, device, args.block_size) for m in ("naive", "tiled")}
    if device.type == "cpu":
        memory["tracked_naive"] = peak_extra_memory("naive", B, H, L, E, device, args.block_size, tracked=True)
        memory["tracked_tiled"] = peak_extra_memory("tiled", B, H, L, E, device, args.block_size, tracked=True)
    method = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS of a fresh process"
    short = "max_memory_allocated" if device.type == "cuda" else "process RSS"
    add(f"peak extra memory, tiled / naive ({short})", config, memory["tiled"] / memory["naive"], 0.1)
    if device.type == "cpu":
        add("peak tensor bytes, tiled / naive (tracker)", config,
            memory["tracked_tiled"] / memory["tracked_naive"], 0.1)

    D, H_dec, prompt = 768, 12, 64
    config = f"{new_tokens} new tokens, prompt {prompt}, D={D} H={H_dec}"
    print(f"decoding {config} ...", flush=True)
    decode = bench_decode(new_tokens, prompt, D, H_dec, decode_reps, device)
    add("KV-cache speed-up (recompute / cached)", config, decode["ratios"]["recompute/kv_cache"], 5.0,
        better="higher")

    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Attention benchmark on {device.type} ({name}), torch {torch.__version__}, float32, "
              f"median of {reps} paired repetitions ({decode_reps} for decoding)"
              f"{' [--quick: small shapes, no targets]' if args.quick else ''}")
    print()
    print(header)
    print(f"1-minute load average: {load_start:.1f} at start, {load_end:.1f} at end "
          f"(on a shared machine, compare the ratios, not the absolute times)")
    print()
    widths = (48, 40, 9, 8, 4)
    print(f"{'figure':<{widths[0]}} {'configuration':<{widths[1]}} {'measured':>{widths[2]}} "
          f"{'target':>{widths[3]}} {'met':>{widths[4]}}")
    print("-" * (sum(widths) + 4))
    for row in rows:
        target = "" if row["target"] is None else ("<=" if row["better"] == "lower" else ">=") + f"{row['target']:g}"
        met = "" if row["meets_target"] is None else ("yes" if row["meets_target"] else "NO")
        print(f"{row['figure']:<{widths[0]}} {row['config']:<{widths[1]}} {row['value']:>{widths[2] - 1}.2f}x "
              f"{target:>{widths[3]}} {met:>{widths[4]}}")
    print()
    print(f"peak extra memory at {memory_shape}: naive {memory['naive'] / 2**20:.0f} MiB, tiled "
          f"{memory['tiled'] / 2**20:.0f} MiB ({method})"
          + (f"; tensor bytes (MemoryTracker): naive {memory['tracked_naive'] / 2**20:.0f} MiB, tiled "
             f"{memory['tracked_tiled'] / 2**20:.0f} MiB" if device.type == "cpu" else ""))
    print(f"took {time.time() - started:.0f} s")

    out_path = Path(args.json) if args.json else ROOT / "build" / "bench" / (
        f"attention_bench_{device.type}{'_quick' if args.quick else ''}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "header": header, "device": device.type, "device_name": name, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "reps": reps, "block_size": args.block_size, "quick": args.quick,
        "load_average": [load_start, load_end], "rows": rows, "speed": speed,
        "memory_bytes": memory, "memory_method": method, "decode": decode,
    }, indent=2))
    print(f"wrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")


if __name__ == "__main__":
    main()
