"""Chapter 09 checks: right answers pass, unfilled ones say so, each known mistake gets its own diagnosis."""

import math

import torch

from course_lib import checks
from course_lib.checks.base import NON_CONTIGUOUS

# Right answers, written independently of the references (the way a learner would).


def good_online_softmax(x):
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)  # running max
    d = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)  # running sum of exp(x_j - m)
    for j in range(x.shape[-1]):
        m_new = torch.maximum(m, x[..., j])
        d = d * torch.exp(m - m_new) + torch.exp(x[..., j] - m_new)
        m = m_new
    return torch.exp(x - m.unsqueeze(-1)) / d.unsqueeze(-1)


def good_tiled_attention(query, key, value, block_size):
    scale = query.shape[-1] ** -0.5
    m = torch.full(query.shape[:-1] + (1,), float("-inf"), dtype=query.dtype, device=query.device)
    l_sum = torch.zeros(query.shape[:-1] + (1,), dtype=query.dtype, device=query.device)
    acc = torch.zeros(query.shape[:-1] + (value.shape[-1],), dtype=query.dtype, device=query.device)
    for start in range(0, key.shape[-2], block_size):
        k_blk, v_blk = key[..., start:start + block_size, :], value[..., start:start + block_size, :]
        s = torch.matmul(query, k_blk.transpose(-1, -2)) * scale
        m_new = torch.maximum(m, s.max(dim=-1, keepdim=True).values)
        p = torch.exp(s - m_new)
        correction = torch.exp(m - m_new)
        l_sum = l_sum * correction + p.sum(dim=-1, keepdim=True)
        acc = acc * correction + torch.matmul(p, v_blk)
        m = m_new
    return acc / l_sum


def good_kv_cache_step(query, key, value, cache_keys, cache_values):
    keys = torch.cat((cache_keys, key), dim=-2)
    values = torch.cat((cache_values, value), dim=-2)
    scores = torch.matmul(query, keys.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.matmul(weights, values), keys, values


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


GOOD = [
    (checks.check_online_softmax, good_online_softmax),
    (checks.check_tiled_attention, good_tiled_attention),
    (checks.check_kv_cache_step, good_kv_cache_step),
]


def test_the_right_answers_also_pass_with_another_seed():
    for check, fn in GOOD:
        assert check(fn, seed=123).status == "passed"


# Buggy implementations, each written out on its own.


def softmax_sum_not_rescaled(x):
    m = torch.full(x.shape[:-1], float("-inf"), device=x.device)
    d = torch.zeros(x.shape[:-1], device=x.device)
    for j in range(x.shape[-1]):
        m = torch.maximum(m, x[..., j])
        d = d + torch.exp(x[..., j] - m)  # the old sum stays relative to the old max
    return torch.exp(x - m[..., None]) / d[..., None]


def softmax_rescale_flipped(x):
    m, d = x[..., 0].clone(), torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)  # starts from the first element
    for j in range(1, x.shape[-1]):
        m_new = torch.maximum(m, x[..., j])
        d = d * torch.exp(m_new - m) + torch.exp(x[..., j] - m_new)
        m = m_new
    return torch.exp(x - m[..., None]) / d[..., None]


def softmax_rescale_flipped_from_minus_inf(x):
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)
    d = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for j in range(x.shape[-1]):
        m_new = torch.maximum(m, x[..., j])
        d = d * torch.exp(m_new - m) + torch.exp(x[..., j] - m_new)  # 0 * inf on the first step
        m = m_new
    return torch.exp(x - m[..., None]) / d[..., None]


def softmax_without_max(x):
    d = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for j in range(x.shape[-1]):
        d += torch.exp(x[..., j])
    return torch.exp(x) / d[..., None]


def softmax_not_normalised(x):
    m = x.max(dim=-1, keepdim=True).values
    return torch.exp(x - m)


def make_tiled(**bug):
    def fn(query, key, value, block_size):
        scale = 1.0 if bug.get("no_scale") else 1.0 / math.sqrt(query.shape[-1])
        m = torch.full(query.shape[:-1] + (1,), float("-inf"), dtype=query.dtype, device=query.device)
        l_sum = torch.zeros(query.shape[:-1] + (1,), dtype=query.dtype, device=query.device)
        acc = torch.zeros(query.shape[:-1] + (value.shape[-1],), dtype=query.dtype, device=query.device)
        S = key.shape[-2]
        n_blocks = S // block_size if bug.get("drop_last") else math.ceil(S / block_size)
        for b in range(n_blocks):
            k_blk = key[..., b * block_size:(b + 1) * block_size, :]
            v_blk = value[..., b * block_size:(b + 1) * block_size, :]
            s = query @ k_blk.transpose(-1, -2) * scale
            if bug.get("per_block"):
                acc = acc + torch.softmax(s, dim=-1) @ v_blk  # each block normalised on its own
                continue
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            l_sum = (l_sum if bug.get("sum") else l_sum * alpha) + p.sum(dim=-1, keepdim=True)
            acc = (acc if bug.get("acc") else acc * alpha) + p @ v_blk
            m = m_new
        if bug.get("per_block"):
            return acc / n_blocks
        return acc if bug.get("no_division") else acc / l_sum

    return fn


def tiled_but_not_tiled(query, key, value, block_size):
    weights = torch.softmax(query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1]), dim=-1)  # (L, S) at once
    return weights @ value


def tiled_keeping_every_block(query, key, value, block_size):
    blocks = [query @ key[..., s:s + block_size, :].transpose(-1, -2) for s in range(0, key.shape[-2], block_size)]
    scores = torch.cat(blocks, dim=-1) / math.sqrt(query.shape[-1])  # the blocks, glued back together
    return torch.softmax(scores, dim=-1) @ value


def make_step(**bug):
    def fn(query, key, value, cache_keys, cache_values):
        dim = bug.get("dim", -2)
        if bug.get("prepend"):
            keys, values = torch.cat([key, cache_keys], dim=dim), torch.cat([value, cache_values], dim=dim)
        else:
            keys, values = torch.cat([cache_keys, key], dim=dim), torch.cat([cache_values, value], dim=dim)
        k_att, v_att = (cache_keys, cache_values) if bug.get("skip_new") else (keys, values)
        scale = 1.0 if bug.get("no_scale") else query.shape[-1] ** -0.5
        weights = torch.softmax(query @ k_att.transpose(-1, -2) * scale, dim=-1)
        out = weights @ v_att
        if bug.get("old_cache"):
            return out, cache_keys, cache_values
        return out, keys, values

    return fn


def tiled_without_running_max(query, key, value, block_size):
    """Blocks summed with a plain exp: exact until a score passes 88 in float32, then inf / inf."""
    l_sum = torch.zeros(query.shape[:-1] + (1,), dtype=query.dtype, device=query.device)
    acc = torch.zeros(query.shape[:-1] + (value.shape[-1],), dtype=query.dtype, device=query.device)
    for start in range(0, key.shape[-2], block_size):
        p = torch.exp(query @ key[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1]))
        l_sum = l_sum + p.sum(dim=-1, keepdim=True)
        acc = acc + p @ value[..., start:start + block_size, :]
    return acc / l_sum


def step_with_plain_exp(query, key, value, cache_keys, cache_values):
    keys, values = torch.cat((cache_keys, key), dim=-2), torch.cat((cache_values, value), dim=-2)
    weights = torch.exp(query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1]))
    return (weights / weights.sum(-1, keepdim=True)) @ values, keys, values


BUGGY = [
    (checks.check_tiled_attention, tiled_without_running_max, "no_running_max"),
    (checks.check_kv_cache_step, step_with_plain_exp, "unstable_softmax"),
    (checks.check_online_softmax, softmax_sum_not_rescaled, "sum_not_rescaled"),
    (checks.check_online_softmax, softmax_rescale_flipped, "rescale_sign_flipped"),
    (checks.check_online_softmax, softmax_rescale_flipped_from_minus_inf, "rescale_sign_flipped"),
    (checks.check_online_softmax, softmax_without_max, "no_running_max"),
    (checks.check_online_softmax, softmax_not_normalised, "no_normalisation"),
    (checks.check_tiled_attention, make_tiled(acc=True), "accumulator_not_rescaled"),
    (checks.check_tiled_attention, make_tiled(sum=True), "sum_not_rescaled"),
    (checks.check_tiled_attention, make_tiled(no_scale=True), "no_scale"),
    (checks.check_tiled_attention, make_tiled(no_division=True), "no_final_division"),
    (checks.check_tiled_attention, make_tiled(drop_last=True), "last_block_dropped"),
    (checks.check_tiled_attention, make_tiled(per_block=True), "per_block_softmax"),
    (checks.check_tiled_attention, tiled_but_not_tiled, "materialised_weights"),
    (checks.check_tiled_attention, tiled_keeping_every_block, "materialised_weights"),
    (checks.check_kv_cache_step, make_step(dim=1), "cache_wrong_dim"),
    (checks.check_kv_cache_step, make_step(dim=2), "cache_wrong_dim"),
    (checks.check_kv_cache_step, make_step(dim=0), "cache_wrong_dim"),
    (checks.check_kv_cache_step, make_step(dim=-1), "cache_wrong_dim"),
    (checks.check_kv_cache_step, make_step(skip_new=True), "new_token_not_attended"),
    (checks.check_kv_cache_step, make_step(old_cache=True), "cache_not_returned"),
    (checks.check_kv_cache_step, make_step(prepend=True), "new_token_prepended"),
    (checks.check_kv_cache_step, make_step(no_scale=True), "no_scale"),
]


def test_wrong_dim_shows_the_error_and_names_dim_minus_2(capsys):
    report = checks.check_kv_cache_step(make_step(dim=1))
    failed = [r for r in report.results if not r.passed]
    # dim 1 is right for (B, P, E); the non-contiguous property repeats a per-head case
    assert [r.title for r in failed] == ["a cache per head, (B, H, P, E), and three leading dims", NON_CONTIGUOUS]
    assert "raised RuntimeError: Sizes of tensors must match" in failed[0].detail
    assert "dim=-2" in capsys.readouterr().out


def test_materialised_weights_fail_only_the_memory_property():
    report = checks.check_tiled_attention(tiled_but_not_tiled)
    failed = [r for r in report.results if not r.passed]
    assert [r.title for r in failed] == ["never holds the whole (L, S) weight matrix (L = S = 512, blocks of 32 keys)"]
    assert "1,048,576 bytes" in failed[0].detail  # 512 * 512 float32 weights


def test_other_errors_still_propagate_as_raised():
    def broken(query, key, value, cache_keys, cache_values):
        raise RuntimeError("something else")

    report = checks.check_kv_cache_step(broken)
    assert report.status == "failed" and report.diagnoses == []
    assert all("raised RuntimeError: something else" in r.detail for r in report.results)


def test_prepended_cache_gives_the_right_output_but_fails_on_the_cache():
    report = checks.check_kv_cache_step(make_step(prepend=True))
    details = [r.detail for r in report.results if not r.passed]
    assert details and all("new cache_keys" in d for d in details)


def test_the_checks_are_registered_for_the_grader():
    from course_lib.checks import efficient

    assert efficient in checks.CHAPTER_MODULES
    assert set(efficient.__all__) == {"check_online_softmax", "check_tiled_attention", "check_kv_cache_step",
                                      "check_predict_score_matrix_mib", "check_find_memory_exponent"}
