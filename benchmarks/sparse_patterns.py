"""How far is sparse attention from full attention on a real model's queries, keys and values?

For each sparse pattern of ``course_lib.efficient`` (sliding window, strided and fixed from the
Sparse Transformer, sliding window + global tokens from Longformer/BigBird, and a random mask of
the same density as a control), this script takes the real queries, keys and values of every
layer and head of all-MiniLM-L6-v2 (chapter 10's model, ``course_lib.pretrained.load_minilm``)
on a paragraph of text, and measures

- the fraction of the (T, T) scores the pattern keeps ("kept"),
- the share of the full attention weight that falls inside the pattern ("mass", averaged over
  layers, heads and queries: what the pattern would keep of the full softmax), and
- the relative error of the attention output, ``||out_sparse - out_full|| / ||out_full||``,
  over all heads of a layer (the per-head outputs before W_out), for each of the 6 layers.

The queries, keys and values are the model's own: layer l's input (``hidden_states[l]``)
projected by that layer's ``W_query``, ``W_key``, ``W_value`` and split into 12 heads, exactly
what the model's attention computes (checked below against the model's own attention weights).
The model is bidirectional (an encoder), so the patterns are the two-sided ones (causal=False).

Usage::

    python benchmarks/sparse_patterns.py            # a few seconds; needs the packaged model

Not part of the test suite; the figures are for chapter 09's lesson.
Sources: Child et al. 2019, sec. 4.3; Beltagy et al. 2020, sec. 3.1; Zaheer et al. 2020, sec. 2.
"""

from __future__ import annotations

import argparse

import torch

from course_lib.attention import scaled_dot_product_attention
from course_lib.efficient import fixed_mask, global_local_mask, sliding_window_mask, strided_mask
from course_lib.multihead import split_heads
from course_lib.pretrained import load_minilm

PARAGRAPH = (
    "The animal did not cross the street because it was too tired. Attention lets every word of a "
    "sentence look at every other word and decide which ones matter for its meaning. A query is "
    "compared with all the keys, the scores go through a softmax, and the output is a weighted sum "
    "of the values. Because every pair of words is compared, the cost grows with the square of the "
    "length of the text, which is why long documents need cheaper patterns: a window around each "
    "word, a few global tokens that see everything, or regular strides that skip over the text."
)


def patterns(T: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The masks compared, all (T, T) bool, True = may attend, sized to keep about a quarter of the scores."""
    masks = {
        "sliding window (w=33)": sliding_window_mask(T, 33, causal=False),
        "strided (l=8)": strided_mask(T, 8, causal=False),
        "fixed (l=16, c=2)": fixed_mask(T, 16, summary=2, causal=False),
        "window + global [CLS],[SEP] (w=29)": global_local_mask(T, 29, [0, T - 1]),
        "window + global: first 4 tokens (w=25)": global_local_mask(T, 25, 4),
    }
    density = masks["strided (l=8)"].float().mean()
    random = torch.rand(T, T, generator=generator) < density
    masks["random, same density as strided (control)"] = random | torch.eye(T, dtype=torch.bool)
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=PARAGRAPH, help="the text to encode")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_minilm()
    out = model.encode(args.text)
    T = out.hidden_states[0].shape[1]
    H = model.num_heads
    qkv = []
    with torch.no_grad():
        for layer, x in zip(model.layers, out.hidden_states[:-1]):  # x: the layer's input (1, T, D)
            attention = layer.attention
            q = split_heads(attention.W_query(x), H)  # (1, T, D) -> (1, H, T, Dh)
            k = split_heads(attention.W_key(x), H)  # (1, H, T, Dh)
            v = split_heads(attention.W_value(x), H)  # (1, H, T, Dh)
            qkv.append((q, k, v))
        # The q, k, v are the model's own: their weights equal the model's attention weights.
        for (q, k, v), weights in zip(qkv, out.attentions):
            _, w = scaled_dot_product_attention(q, k, v, return_weights=True)  # (1, H, T, T)
            torch.testing.assert_close(w, weights, rtol=1e-4, atol=1e-5)
        full = [scaled_dot_product_attention(q, k, v) for q, k, v in qkv]  # (1, H, T, Dh) per layer

        print(f"all-MiniLM-L6-v2, {len(model.layers)} layers x {H} heads, one paragraph of T = {T} tokens")
        print("relative error ||out_sparse - out_full|| / ||out_full|| of the per-head attention outputs, per layer\n")
        header = f"{'pattern':<42} {'kept':>6} {'mass':>6} " + " ".join(f"{'L' + str(i):>6}" for i in range(len(qkv)))
        print(header + f" {'mean':>6}")
        print("-" * len(header + " mean  "))
        for name, mask in patterns(T, torch.Generator().manual_seed(0)).items():
            errors = []
            for (q, k, v), reference in zip(qkv, full):
                sparse = scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (1, H, T, Dh)
                errors.append(((sparse - reference).norm() / reference.norm()).item())
            kept = mask.float().mean().item()
            mass = torch.stack([w[..., mask].sum() / w.sum() for w in out.attentions]).mean().item()
            print(f"{name:<42} {kept:>6.1%} {mass:>6.1%} " + " ".join(f"{e:>6.3f}" for e in errors)
                  + f" {sum(errors) / len(errors):>6.3f}")
        # Where does the weight go? The share of each query's attention on [CLS] and [SEP], per layer.
        print("\nmean attention weight on [CLS] + [SEP] per layer (all heads and queries): "
              + " ".join(f"{(w[..., [0, T - 1]].sum(-1).mean()).item():.2f}" for w in out.attentions))


if __name__ == "__main__":
    main()
