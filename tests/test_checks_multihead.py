"""course_lib.checks for chapter 05: right answers pass, each known mistake triggers its own diagnosis only."""

import math

import torch

from course_lib import checks

# Right answers, written independently of the references (einsum, explicit loops, torch.softmax).


def good_split_heads(x, num_heads):
    B, T, D = x.shape
    return torch.stack(x.chunk(num_heads, dim=-1), dim=1)  # H x (B, T, Dh) -> (B, H, T, Dh)


def good_merge_heads(x):
    return torch.cat(x.unbind(dim=1), dim=-1)  # H x (B, T, Dh) -> (B, T, H*Dh)


def good_multi_head_attention(x, W_query, W_key, W_value, W_out, num_heads):
    D = x.shape[-1]
    Dh = D // num_heads
    heads = []
    for h in range(num_heads):
        cols = slice(h * Dh, (h + 1) * Dh)
        q, k, v = x @ W_query[:, cols], x @ W_key[:, cols], x @ W_value[:, cols]  # (B, T, Dh)
        w = torch.softmax(torch.einsum("btd,bsd->bts", q, k) / math.sqrt(Dh), dim=-1)
        heads.append(w @ v)
    return torch.cat(heads, dim=-1) @ W_out


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_split_heads, good_split_heads),
    (checks.check_merge_heads, good_merge_heads),
    (checks.check_multi_head_attention, good_multi_head_attention),
]


def test_checks_are_exported():
    for name in ("check_split_heads", "check_merge_heads", "check_multi_head_attention"):
        assert name in checks.__all__ and callable(getattr(checks, name))


# Buggy implementations, each written the way a learner would write it.


def split_view_only(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, num_heads, T, D // num_heads)


def split_wrong_order(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2)


def split_no_transpose(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads)


def merge_view_only(x):
    B, H, T, Dh = x.shape
    return x.reshape(B, T, H * Dh)


def merge_interleaved(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)


def merge_mean(x):
    return x.sum(1)


def merge_view_after_transpose(x):
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).view(B, T, H * Dh)  # crashes: not contiguous


def mha(*, split="right", merge="right", scale="head_dim", out_proj=True, transpose_weights=False):
    def fn(x, W_query, W_key, W_value, W_out, num_heads):
        B, T, D = x.shape
        Dh = D // num_heads
        Ws = [W.T if transpose_weights else W for W in (W_query, W_key, W_value, W_out)]

        def split_(t):
            if split == "view_only":
                return t.view(B, num_heads, T, Dh)
            return t.view(B, T, num_heads, Dh).transpose(1, 2)

        q, k, v = (split_(x @ W) for W in Ws[:3])
        denom = {"head_dim": math.sqrt(Dh), "model_dim": math.sqrt(D), "none": 1.0}[scale]
        heads = torch.softmax(q @ k.transpose(-2, -1) / denom, dim=-1) @ v  # (B, H, T, Dh)
        if split == "view_only" or merge == "view_only":
            merged = heads.reshape(B, T, D)
        else:
            merged = heads.transpose(1, 2).reshape(B, T, D)
        return merged @ Ws[3] if out_proj else merged
    return fn


def mha_plain_exp(x, W_query, W_key, W_value, W_out, num_heads):
    """Right but for a softmax without max-subtraction: NaN once a score passes 88 in float32."""
    B, T, D = x.shape
    q, k, v = (torch.stack((x @ W).chunk(num_heads, dim=-1), dim=1) for W in (W_query, W_key, W_value))  # (B, H, T, Dh)
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(D // num_heads))
    heads = (e / e.sum(-1, keepdim=True)) @ v  # (B, H, T, Dh)
    return torch.cat(heads.unbind(dim=1), dim=-1) @ W_out


BUGGY = [
    (checks.check_multi_head_attention, mha_plain_exp, "unstable_softmax"),
    (checks.check_split_heads, split_view_only, "split_without_transpose"),
    (checks.check_split_heads, split_wrong_order, "wrong_head_order"),
    (checks.check_split_heads, split_no_transpose, "transpose_forgotten"),
    (checks.check_merge_heads, merge_view_only, "merge_without_transpose"),
    (checks.check_merge_heads, merge_interleaved, "heads_interleaved"),
    (checks.check_merge_heads, merge_mean, "heads_summed"),
    (checks.check_merge_heads, merge_view_after_transpose, "view_after_transpose"),
    (checks.check_multi_head_attention, mha(split="view_only"), "split_without_transpose"),
    (checks.check_multi_head_attention, mha(merge="view_only"), "merge_without_transpose"),
    (checks.check_multi_head_attention, mha(scale="model_dim"), "scale_by_model_dim"),
    (checks.check_multi_head_attention, mha(scale="none"), "scale_forgotten"),
    (checks.check_multi_head_attention, mha(out_proj=False), "output_projection_forgotten"),
    (checks.check_multi_head_attention, mha(transpose_weights=True), "weights_transposed"),
]


def test_split_without_transpose_message_says_tokens_are_mixed(capsys):
    checks.check_split_heads(split_view_only)
    out = capsys.readouterr().out
    assert "view but no transpose mix tokens" in out


def test_a_crash_is_reported_not_raised(capsys):
    def broken(x, num_heads):
        raise ZeroDivisionError("boom")

    report = checks.check_split_heads(broken)
    assert report.status == "failed" and report.passed == 0 and report.diagnoses == []
    assert "ZeroDivisionError: boom" in capsys.readouterr().out


def test_not_a_function(capsys):
    report = checks.check_merge_heads(42)
    assert report.status == "error" and "not a function" in capsys.readouterr().out
