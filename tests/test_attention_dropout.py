"""Attention dropout: weights zeroed at rate p and the kept ones scaled by 1/(1-p), in training only.

The bounds are 6 standard deviations of the statistic under the null (the code is right), with
samples of 10^5 or more weights, and the seed is fixed: a correct implementation fails with
probability below 1e-8 for any seed, and the fixed seed makes the run reproducible.
"""

import math

import pytest
import torch

from course_lib import MultiHeadAttention, scaled_dot_product_attention
from course_lib.gpt import CausalSelfAttention
from course_lib.multihead import merge_heads, split_heads


def _check_dropped(dropped, clean, p):
    """dropped: weights with dropout; clean: the same weights without. Checks rate and rescaling."""
    zeroed = dropped == 0
    kept = ~zeroed
    # Every kept weight is the clean one times 1/(1-p), exactly up to rounding.
    torch.testing.assert_close(dropped[kept], clean.expand_as(dropped)[kept] / (1 - p))
    # Zeroed at rate p: a Binomial(n, p) count, bound of 6 standard deviations.
    n = zeroed.numel()
    assert abs(zeroed.sum().item() - n * p) < 6 * math.sqrt(n * p * (1 - p)), (zeroed.float().mean().item(), p)
    # The expected row sum stays 1. Each row sum is sum_j w_j b_j / (1-p), b_j ~ Bernoulli(1-p):
    # variance sum_j w_j^2 p / (1-p) per row; the mean over R independent rows has that / R.
    rows = dropped.sum(-1).flatten()
    row_var = (clean.expand_as(dropped).square().sum(-1).flatten() * p / (1 - p)).mean()
    assert abs(rows.mean().item() - 1.0) < 6 * math.sqrt(row_var.item() / rows.numel())


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_sdpa_dropout_rate_and_rescaling(p):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(64, 4, 32, 8, generator=g), torch.randn(64, 4, 40, 8, generator=g), torch.randn(64, 4, 40, 5, generator=g)
    _, clean = scaled_dot_product_attention(q, k, v, return_weights=True)
    torch.manual_seed(1)  # F.dropout draws from the global generator
    out, dropped = scaled_dot_product_attention(q, k, v, dropout_p=p, return_weights=True)  # 327,680 weights
    _check_dropped(dropped, clean, p)
    torch.testing.assert_close(out, dropped @ v)  # the output uses the dropped weights
    # dropout_p=0.0 is exactly no dropout
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, dropout_p=0.0), clean @ v)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_multihead_dropout_in_training_mode_only(p):
    torch.manual_seed(2)
    module = MultiHeadAttention(16, 4, dropout=p)
    x = torch.randn(32, 48, 16, generator=torch.Generator().manual_seed(3))  # weights: 32 * 4 * 48 * 48 = 294,912
    module.eval()
    out_eval, w_eval = module(x, need_weights=True)
    out_again, w_again = module(x, need_weights=True)
    assert torch.equal(out_eval, out_again) and torch.equal(w_eval, w_again)  # eval: deterministic, no dropout
    assert (w_eval > 0).all()  # softmax weights are positive: any zero in training is a dropout
    torch.testing.assert_close(w_eval.sum(-1), torch.ones(32, 4, 48))
    reference = MultiHeadAttention(16, 4, dropout=0.0)
    reference.load_state_dict(module.state_dict())
    torch.testing.assert_close(out_eval, reference.train()(x))  # eval with dropout == no dropout at all
    module.train()
    torch.manual_seed(4)
    _, w_train = module(x, need_weights=True)
    _check_dropped(w_train, w_eval, p)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
def test_gpt_attention_drops_weights_and_its_output_uses_them(num_kv_heads):
    """CausalSelfAttention's dropout is on the attention weights (Vaswani et al. 2017, sec. 5.4, as
    nn.MultiheadAttention and F.scaled_dot_product_attention's dropout_p): each allowed weight is zeroed at
    rate p, the kept ones are scaled by 1/(1-p), the causal zeros stay zero, and the output is the dropped
    weights times the values (not the clean output with its features dropped)."""
    p, B, L, D, H = 0.2, 32, 48, 16, 4
    torch.manual_seed(5)
    module = CausalSelfAttention(D, H, num_kv_heads, dropout=p)
    x = torch.randn(B, L, D, generator=torch.Generator().manual_seed(6))
    _, w_eval = module.eval()(x, need_weights=True)
    torch.manual_seed(7)
    out, w_train = module.train()(x, need_weights=True)
    allowed = torch.ones(L, L, dtype=torch.bool).tril().expand_as(w_train)  # (B, H, L, L): 37,632 allowed weights
    assert (w_train[~allowed] == 0).all() and (w_eval[allowed] > 0).all()
    zeroed = (w_train == 0) & allowed
    n = int(allowed.sum())
    assert abs(zeroed.sum().item() - n * p) < 6 * math.sqrt(n * p * (1 - p)), zeroed.sum().item() / n
    kept = allowed & ~zeroed
    torch.testing.assert_close(w_train[kept], w_eval[kept] / (1 - p))
    values = split_heads(module.W_value(x), num_kv_heads)  # (B, Hkv, L, E)
    heads = (w_train.unflatten(1, (num_kv_heads, H // num_kv_heads)) @ values.unsqueeze(2)).flatten(1, 2)
    torch.testing.assert_close(out, module.W_out(merge_heads(heads)))
