"""Largest error of course_lib in float16 and bfloat16 against PyTorch, in units of the unit roundoff u.

The tests in tests/test_devices_dtypes.py assert ``|ours - ref| <= c u (1 + |ref|)`` (attention,
softmax) and ``|ours - ref| <= c u (max|ref| + |ref|)`` (multi-head attention) for a stated c;
this script draws many random cases of the same kinds and prints, for each comparison, the
smallest c that every case would pass, next to the c the tests use. u = 2**-11 in float16,
2**-8 in bfloat16.

Comparisons:
    sdpa/normal      randn inputs, any mask            vs torch MATH in float32 on the same inputs, rounded
    sdpa/large       integer q, k up to 256, scores above 65504 before scaling   (same reference)
    sdpa/torch-half  randn inputs                      vs F.scaled_dot_product_attention on the half tensors
    softmax          spreads 0.1 to 6e4, rows up to 600 vs torch.softmax in float32, rounded
    mha/float32      nn.MultiheadAttention(batch_first=True) in float32 (same half-exact weights), rounded
    mha/torch-half   the same torch module converted to the half format

Usage::

    .venv/bin/python benchmarks/dtype_errors.py            # about 30 s of CPU time
    .venv/bin/python benchmarks/dtype_errors.py --cases 50 # quicker

Not part of the test suite; it asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import MultiHeadAttention, scaled_dot_product_attention, softmax  # noqa: E402

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
C_IN_TESTS = {"sdpa/normal": 2, "sdpa/large": 2, "sdpa/torch-half": 4, "softmax": 2, "mha/float32": 16, "mha/torch-half": 16}


def c_needed(ours, ref, u, floor=None):
    """Smallest c with |ours - ref| <= c u (floor + |ref|) on every finite entry (floor 1 by default)."""
    ours, ref = ours.double(), ref.double()
    keep = torch.isfinite(ref)
    floor = 1.0 if floor is None else floor
    if not keep.any():
        return 0.0
    return ((ours - ref).abs()[keep] / (floor + ref.abs()[keep])).max().item() / u


def math_float32(q, k, v, dtype, **kwargs):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(dtype)


def attention_case(g, dtype, large):
    B, H = int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
    L, S, Ev = (int(torch.randint(1, n, (1,), generator=g)) for n in (33, 33, 9))
    kwargs = {}
    if large:
        E = int(torch.randint(1, 17, (1,), generator=g))
        q = torch.randint(-256, 257, (B, H, L, E), generator=g).float()
        k = torch.randint(-256, 257, (B, H, S, E), generator=g).float()
        q[..., 0, :], k[..., 0, :] = 256.0, 256.0  # one score of E * 65536 >= 65536 > 65504
        kwargs["scale"] = [1.0, 0.25, 0.0625][int(torch.randint(0, 3, (1,), generator=g))]  # sqrt exact: exact scores
    else:
        E = int(torch.randint(1, 65, (1,), generator=g))
        q, k = torch.randn(B, H, L, E, generator=g), torch.randn(B, H, S, E, generator=g)
    v = torch.randn(B, H, S, Ev, generator=g)
    kind = int(torch.randint(0, 3, (1,), generator=g))
    full = torch.zeros(B, H, L, dtype=torch.bool)
    if kind == 1:
        mask = torch.rand(B, 1, L, S, generator=g) > 0.4
        kwargs["attn_mask"] = mask
        full = ~mask.any(-1).expand(B, H, L)
    elif kind == 2:
        kwargs["is_causal"] = True
    return q.to(dtype), k.to(dtype), v.to(dtype), kwargs, full


def mha_case(g, dtype, seed):
    H = int(torch.randint(1, 5, (1,), generator=g))
    D = H * int(torch.randint(1, 17, (1,), generator=g))
    B, L, S = (int(torch.randint(1, n, (1,), generator=g)) for n in (4, 17, 17))
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_(0, 0.1)
        ref.out_proj.bias.normal_(0, 0.1)
        for p in ref.parameters():
            p.copy_(p.to(dtype).float())
    x = (3 * torch.randn(B, L, D, generator=g)).to(dtype)
    mem = (3 * torch.randn(B, S, D, generator=g)).to(dtype)
    return ref, x, mem


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="random cases per comparison and dtype (default 200)")
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        for dtype, u in UNIT_ROUNDOFF.items():
            worst = dict.fromkeys(C_IN_TESTS, 0.0)
            for i in range(args.cases):
                for large in (False, True):
                    q, k, v, kwargs, full = attention_case(g, dtype, large)
                    ours = scaled_dot_product_attention(q, k, v, **kwargs)
                    assert torch.isfinite(ours).all() and (ours[full] == 0).all()
                    name = "sdpa/large" if large else "sdpa/normal"
                    worst[name] = max(worst[name], c_needed(ours[~full], math_float32(q, k, v, dtype, **kwargs)[~full], u))
                    if not large:
                        theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
                        rows_ok = ~full & torch.isfinite(theirs).all(-1)
                        worst["sdpa/torch-half"] = max(worst["sdpa/torch-half"], c_needed(ours[rows_ok], theirs[rows_ok], u))
                n = int(torch.randint(1, 601, (1,), generator=g))
                spread = 10 ** float(torch.empty(1).uniform_(-1.0, 4.78, generator=g))  # 0.1 .. 6e4, log-uniform
                x = (torch.randn(3, n, generator=g) * spread).clamp(-65504, 65504).to(dtype)
                worst["softmax"] = max(worst["softmax"], c_needed(softmax(x), torch.softmax(x.float(), -1).to(dtype), u))
                if i < args.cases // 2:
                    ref, x, mem = mha_case(g, dtype, i)
                    half_ref = copy.deepcopy(ref).to(dtype)
                    ours = MultiHeadAttention.from_torch(half_ref)(x, mem, mem)
                    expected = ref(x.float(), mem.float(), mem.float(), need_weights=False)[0]
                    theirs = half_ref(x, mem, mem, need_weights=False)[0]
                    floor = max(expected.abs().max().item(), 1.0)
                    worst["mha/float32"] = max(worst["mha/float32"], c_needed(ours, expected, u, floor))
                    worst["mha/torch-half"] = max(worst["mha/torch-half"], c_needed(ours, theirs, u, floor))
            for name, c in worst.items():
                rows.append((str(dtype).replace("torch.", ""), name, c, C_IN_TESTS[name]))
    print(f"{'dtype':<9} {'comparison':<16} {'largest error / u':>17} {'c in tests':>10}")
    for dtype, name, c, c_test in rows:
        print(f"{dtype:<9} {name:<16} {c:>17.2f} {c_test:>10}")


if __name__ == "__main__":
    main()
