"""course_lib.checks for chapter 10: right answers pass, each known mistake triggers its own diagnosis only."""

import math

import torch

from course_lib import checks

# Right answers, written independently of the references (explicit loops over heads, einsum, torch.softmax).


def good_bert_self_attention(x, key_padding_mask, W_query, b_query, W_key, b_key, W_value, b_value, W_out, b_out,
                             num_heads):
    B, T, D = x.shape
    Dh = D // num_heads
    q = torch.nn.functional.linear(x, W_query, b_query)  # (B, T, D)
    k = torch.nn.functional.linear(x, W_key, b_key)
    v = torch.nn.functional.linear(x, W_value, b_value)
    blocked = ~key_padding_mask.bool()[:, None, :]  # (B, 1, T): True where the key is padding
    heads = []
    for h in range(num_heads):
        cols = slice(h * Dh, (h + 1) * Dh)
        scores = torch.einsum("bid,bjd->bij", q[..., cols], k[..., cols]) / math.sqrt(Dh)
        weights = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)
        heads.append(weights @ v[..., cols])
    return torch.nn.functional.linear(torch.cat(heads, dim=-1), W_out, b_out)


def good_link_scores(weights, query, key):
    T = weights.shape[-1]
    column = weights[..., :, key]  # (..., T): what every query gives the key
    others = (column.sum(-1) - column[..., query]) / (T - 1)
    return column[..., query] - others


def good_mean_pool(hidden, attention_mask):
    rows = []
    for b in range(hidden.shape[0]):
        real = attention_mask[b].bool()
        rows.append(hidden[b][real].mean(dim=0))
    return torch.stack(rows)


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_bert_self_attention, good_bert_self_attention),
    (checks.check_link_scores, good_link_scores),
    (checks.check_mean_pool, good_mean_pool),
]


def test_checks_are_exported():
    for name in ("check_bert_self_attention", "check_link_scores", "check_mean_pool"):
        assert name in checks.__all__ and callable(getattr(checks, name))
        assert name in checks.pretrained.__all__


# Buggy implementations, each written the way a learner would write it.


def attention(*, transpose=True, bias=True, scale="head_dim", mask="right", split="right"):
    def fn(x, key_padding_mask, W_query, b_query, W_key, b_key, W_value, b_value, W_out, b_out, num_heads):
        B, T, D = x.shape
        Dh = D // num_heads

        def lin(inp, W, b):
            out = inp @ (W.T if transpose else W)
            return out + b if bias else out

        def heads_of(t):
            if split == "view_only":
                return t.reshape(B, num_heads, T, Dh)
            return t.view(B, T, num_heads, Dh).transpose(1, 2)

        q, k, v = heads_of(lin(x, W_query, b_query)), heads_of(lin(x, W_key, b_key)), heads_of(lin(x, W_value, b_value))
        denom = {"head_dim": math.sqrt(Dh), "model_dim": math.sqrt(D), "none": 1.0}[scale]
        scores = q @ k.transpose(-2, -1) / denom
        if mask == "right":
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        elif mask == "inverted":
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        merged = out.reshape(B, T, D) if split == "view_only" else out.transpose(1, 2).reshape(B, T, D)
        return lin(merged, W_out, b_out)
    return fn


def inverted_mask_with_course_lib(x, key_padding_mask, W_query, b_query, W_key, b_key, W_value, b_value, W_out, b_out,
                                  num_heads):
    from course_lib import merge_heads, scaled_dot_product_attention, split_heads

    def proj(W, b):
        return split_heads(x @ W.T + b, num_heads)

    q, k, v = proj(W_query, b_query), proj(W_key, b_key), proj(W_value, b_value)
    out = scaled_dot_product_attention(q, k, v, attn_mask=~key_padding_mask[:, None, None, :])  # zeros, not NaN
    return merge_heads(out) @ W_out.T + b_out


def link_transposed(weights, query, key):
    T = weights.shape[-1]
    row = weights[..., key, :]
    return row[..., query] - (row.sum(-1) - row[..., query]) / (T - 1)


def link_mean_all(weights, query, key):
    return weights[..., query, key] - weights[..., key].mean(-1)


def link_raw(weights, query, key):
    return weights[..., query, key]


def link_row_baseline(weights, query, key):
    T = weights.shape[-1]
    row = weights[..., query, :]
    return row[..., key] - (row.sum(-1) - row[..., key]) / (T - 1)


def pool_all(hidden, attention_mask):
    return hidden.mean(1)


def pool_divide_by_T(hidden, attention_mask):
    return (hidden * attention_mask[..., None]).sum(1) / attention_mask.shape[1]


def pool_features(hidden, attention_mask):
    return hidden.mean(-1) * attention_mask


def pool_normalised(hidden, attention_mask):
    m = attention_mask[..., None].to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(mean, dim=-1)


BUGGY = [
    (checks.check_bert_self_attention, attention(transpose=False), "weights_not_transposed"),
    (checks.check_bert_self_attention, attention(bias=False), "bias_forgotten"),
    (checks.check_bert_self_attention, attention(scale="model_dim"), "scale_by_model_dim"),
    (checks.check_bert_self_attention, attention(scale="none"), "scale_forgotten"),
    (checks.check_bert_self_attention, attention(mask="none"), "padding_ignored"),
    (checks.check_bert_self_attention, attention(mask="inverted"), "mask_inverted"),
    (checks.check_bert_self_attention, inverted_mask_with_course_lib, "mask_inverted"),
    (checks.check_bert_self_attention, attention(split="view_only"), "split_without_transpose"),
    (checks.check_link_scores, link_transposed, "row_and_column_swapped"),
    (checks.check_link_scores, link_mean_all, "baseline_includes_query"),
    (checks.check_link_scores, link_raw, "no_baseline"),
    (checks.check_link_scores, link_row_baseline, "baseline_over_keys"),
    (checks.check_mean_pool, pool_all, "padding_included"),
    (checks.check_mean_pool, pool_divide_by_T, "padding_in_denominator"),
    (checks.check_mean_pool, pool_features, "mean_over_features"),
    (checks.check_mean_pool, pool_normalised, "normalized"),
]


def test_padding_included_message_explains_the_padding(capsys):
    checks.check_mean_pool(pool_all)
    out = capsys.readouterr().out
    assert "padding included" in out and "number of real tokens" in out


def test_a_crash_is_reported_not_raised(capsys):
    def broken(weights, query, key):
        raise ZeroDivisionError("boom")

    report = checks.check_link_scores(broken)
    assert report.status == "failed" and report.passed == 0 and report.diagnoses == []
    assert "ZeroDivisionError: boom" in capsys.readouterr().out
