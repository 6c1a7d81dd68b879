"""course_lib.gpt and course_lib.data.corpus against PyTorch, Hugging Face's GPT-2 and counting by hand."""

import collections
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from course_lib.data.corpus import (
    SHAKESPEARE_SHA256,
    CharTokenizer,
    bigram_loss,
    get_batch,
    load_char_corpus,
    load_shakespeare,
    train_val_split,
    unigram_loss,
)
from course_lib.gpt import (
    GPT,
    GPTConfig,
    estimate_loss,
    fit,
    generate,
    grouped_query_attention,
    lm_loss,
    load_into_gpt2,
    lr_at,
    sample_next,
    sampling_probs,
    to_gpt2_state_dict,
)

SETTINGS = settings(max_examples=40, deadline=None)


def small_model(seed=0, dtype=torch.float32, spread=None, **overrides) -> GPT:
    """A small random GPT; ``spread`` redraws every parameter from N(0, spread^2) for peaky logits."""
    torch.manual_seed(seed)
    sizes = dict(vocab_size=23, context_length=16, embed_dim=24, num_heads=4, num_layers=2)
    sizes.update(overrides)
    model = GPT(GPTConfig(**sizes)).to(dtype).eval()
    if spread is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, spread)
    return model


# ----- the corpus ---------------------------------------------------------------------------


def test_the_committed_corpus_is_the_one_the_build_script_writes():
    text = load_shakespeare(verify=True)  # raises if the file's sha256 differs
    assert len(SHAKESPEARE_SHA256) == 64
    assert 900_000 < len(text) < 1_200_000
    assert text.isascii() and text.endswith("\n") and "\n\n\n" not in text
    for boilerplate in ("Gutenberg", "GUTENBERG", "eBook", "License"):
        assert boilerplate not in text
    assert "To be, or not to be" in text  # Hamlet is in it


def test_the_split_has_the_right_sizes_and_shares_no_memory():
    ids = torch.arange(1000)
    train, val = train_val_split(ids, 0.1)
    assert train.numel() == 900 and val.numel() == 100
    assert torch.equal(torch.cat([train, val]), ids)
    assert torch.equal(val, torch.arange(900, 1000))  # the last 10 %
    assert train.untyped_storage().data_ptr() != val.untyped_storage().data_ptr()
    assert ids.untyped_storage().data_ptr() not in (train.untyped_storage().data_ptr(), val.untyped_storage().data_ptr())
    train[:] = -1  # an in-place change to one part cannot reach the other
    assert torch.equal(val, torch.arange(900, 1000)) and torch.equal(ids, torch.arange(1000))


@given(n=st.integers(40, 500), fraction=st.floats(0.05, 0.5), T=st.integers(1, 15), seed=st.integers(0, 1000))
@SETTINGS
def test_batches_from_the_training_part_never_hold_a_validation_token(n, fraction, T, seed):
    ids = torch.arange(n)  # every token is its own position: a leak would show as an id >= len(train)
    train, val = train_val_split(ids, fraction)
    x, y = get_batch(train, 8, min(T, train.numel() - 1), generator=torch.Generator().manual_seed(seed))
    assert int(x.max()) < train.numel() and int(y.max()) < train.numel()
    assert torch.equal(y[:, :-1], x[:, 1:])  # the targets are the inputs shifted by one
    assert torch.equal(y[:, -1], x[:, -1] + 1)


def test_the_real_corpus_split():
    corpus = load_char_corpus()
    n = corpus.train.numel() + corpus.val.numel()
    assert corpus.val.numel() == round(0.1 * n)
    text = load_shakespeare()
    assert corpus.tokenizer.decode(corpus.val[:50]) == text[n - corpus.val.numel():][:50]
    assert corpus.vocab_size == len(set(text)) == 76


def test_the_tokenizer_round_trips_and_names_unknown_characters():
    tok = CharTokenizer("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.decode(tok.encode("low hell")) == "low hell"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("hez")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([99])


def test_the_baselines_equal_counting_by_hand():
    train, val = torch.tensor([0, 1, 1, 2, 0, 1, 2, 2, 1, 0]), torch.tensor([1, 0, 2, 1, 1])
    V = 4
    counts = collections.Counter(train.tolist())
    expected_uni = -sum(math.log((counts[c] + 1) / (len(train) + V)) for c in val.tolist()) / len(val)
    pairs = collections.Counter(zip(train[:-1].tolist(), train[1:].tolist()))
    firsts = collections.Counter(train[:-1].tolist())
    expected_bi = -sum(math.log((pairs[(a, c)] + 1) / (firsts[a] + V))
                       for a, c in zip(val[:-1].tolist(), val[1:].tolist())) / (len(val) - 1)
    assert unigram_loss(train, val, V) == pytest.approx(expected_uni, rel=1e-12)
    assert bigram_loss(train, val, V) == pytest.approx(expected_bi, rel=1e-12)


# ----- grouped-query attention against PyTorch ----------------------------------------------


@given(B=st.integers(1, 3), Hkv=st.integers(1, 3), G=st.integers(1, 4), L=st.integers(1, 9), S=st.integers(1, 9),
       E=st.integers(1, 8), Ev=st.integers(1, 8), causal=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_grouped_query_attention_equals_torch_enable_gqa(B, Hkv, G, L, S, E, Ev, causal, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hkv * G, L, E, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, S, E, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, S, Ev, generator=g, dtype=dtype)
    ours, weights = grouped_query_attention(q, k, v, is_causal=causal, return_weights=True)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, theirs, **tol)
    assert weights.shape == (B, Hkv * G, L, S)
    # the same as repeating each key/value head for its G query heads (head h reads h // G)
    spelled = F.scaled_dot_product_attention(q, k.repeat_interleave(G, 1), v.repeat_interleave(G, 1), is_causal=causal)
    torch.testing.assert_close(ours, spelled, **tol)


def test_grouped_query_attention_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="must divide"):
        grouped_query_attention(torch.randn(1, 5, 2, 4), torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4))
    with pytest.raises(ValueError, match="same number of heads"):
        grouped_query_attention(torch.randn(1, 4, 2, 4), torch.randn(1, 2, 2, 4), torch.randn(1, 1, 2, 4))


# ----- the model ----------------------------------------------------------------------------


def test_the_model_equals_transformers_gpt2():
    model = small_model(spread=0.3)  # large weights: peaky logits, so greedy decoding is a sharp test
    gpt2 = load_into_gpt2(model)
    ids = torch.randint(23, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), gpt2(ids).logits
    assert ours.abs().max() > 1.0  # not a trivial comparison of near-zero logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    prompt = ids[:, :4]
    ours_greedy = generate(model, prompt, 12, temperature=0)
    theirs_greedy = gpt2.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    assert torch.equal(ours_greedy, theirs_greedy)


def test_the_gpt2_state_dict_uses_conv1d_layouts_and_the_tied_matrix():
    model = small_model()
    sd = to_gpt2_state_dict(model)
    D, F_ = 24, 96
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (D, 3 * D)
    assert sd["transformer.h.0.mlp.c_fc.weight"].shape == (D, F_)
    torch.testing.assert_close(sd["transformer.h.1.attn.c_attn.weight"][:, D:2 * D], model.blocks[1].attn.W_key.weight.t())
    assert torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])


def test_gqa_models_cannot_become_gpt2():
    with pytest.raises(ValueError, match="num_kv_heads"):
        to_gpt2_state_dict(small_model(num_kv_heads=2))


def test_the_lm_head_is_the_token_embedding():
    model = small_model()
    assert model.lm_head.weight is model.token_embedding.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_earlier_logits_never_depend_on_later_tokens(num_kv_heads):
    model = small_model(num_kv_heads=num_kv_heads, spread=0.2)
    ids = torch.randint(23, (2, 12), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % 23
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_the_kv_cache_gives_the_logits_of_a_full_recomputation(num_kv_heads):
    model = small_model(num_kv_heads=num_kv_heads, dtype=torch.float64, spread=0.2)
    ids = torch.randint(23, (2, 14), generator=torch.Generator().manual_seed(0))
    caches = model.new_caches()
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, :5], caches=caches), model(ids[:, 5:6], caches=caches), model(ids[:, 6:], caches=caches)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-10, atol=1e-12)
    assert len(caches[0]) == 14 and caches[0].keys.shape == (2, num_kv_heads, 1, 14, 6)


@pytest.mark.parametrize("num_kv_heads, temperature, top_k, top_p", [(4, 0, None, None), (2, 1.0, 5, None),
                                                                     (1, 0.8, None, 0.9), (2, 1.2, 8, 0.8)])
def test_cached_generation_writes_the_same_tokens(num_kv_heads, temperature, top_k, top_p):
    model = small_model(num_kv_heads=num_kv_heads, dtype=torch.float64, spread=0.2)
    prompt = torch.randint(23, (3, 5), generator=torch.Generator().manual_seed(2))
    runs = [generate(model, prompt, 30, temperature=temperature, top_k=top_k, top_p=top_p, use_cache=use_cache,
                     generator=torch.Generator().manual_seed(7)) for use_cache in (True, False)]
    assert runs[0].shape == (3, 35)  # past the context of 16: the window slides
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :5], prompt)


def test_the_cache_computes_fewer_positions():
    model = small_model()
    prompt = torch.randint(23, (1, 4), generator=torch.Generator().manual_seed(0))
    flops = {}
    for use_cache in (True, False):
        with FlopCounterMode(display=False) as counter:
            generate(model, prompt, 12, temperature=0, use_cache=use_cache)
        flops[use_cache] = counter.get_total_flops()
    # uncached runs 4 + 5 + ... + 15 positions, cached 4 + 11 * 1 = 15: the matrix products scale with it
    assert flops[False] > 5 * flops[True] > 0


def test_meta_and_float64_propagate():
    model = small_model(num_kv_heads=2).to("meta")
    ids = torch.zeros(3, 10, dtype=torch.long, device="meta")
    logits, weights = model(ids, need_weights=True)
    assert logits.shape == (3, 10, 23) and logits.device.type == "meta"
    assert len(weights) == 2 and weights[0].shape == (3, 4, 10, 10)
    caches = model.new_caches()
    assert model(ids, caches=caches).shape == (3, 10, 23) and len(caches[1]) == 10
    model64 = small_model(dtype=torch.float64)
    assert model64(torch.zeros(1, 3, dtype=torch.long)).dtype == torch.float64


def test_head_mask_ones_changes_nothing_and_zero_removes_the_head():
    model = small_model(spread=0.2)
    ids = torch.randint(23, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(ids)
        torch.testing.assert_close(model(ids, head_mask=torch.ones(2, 4)), plain)
        mask = torch.ones(2, 4)
        mask[1, 2] = 0
        ablated = model(ids, head_mask=mask)
        model.blocks[1].attn.W_out.weight[:, 12:18] = 0  # head 2's columns of the output projection
        torch.testing.assert_close(ablated, model(ids))


# ----- the loss -----------------------------------------------------------------------------


def test_lm_loss_scores_each_position_on_the_next_token():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 5, 7, generator=g), torch.randint(7, (2, 5), generator=g)
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = -sum(log_probs[b, t, ids[b, t + 1]] for b in range(2) for t in range(4)) / 8
    torch.testing.assert_close(lm_loss(logits, ids), expected)


def test_lm_loss_and_the_shifted_batches_agree():
    model = small_model()
    corpus_ids = torch.randint(23, (200,), generator=torch.Generator().manual_seed(0))
    x, y = get_batch(corpus_ids, 4, 15, generator=torch.Generator().manual_seed(1))
    window = torch.cat([x, y[:, -1:]], dim=1)  # (4, 16): x plus the last target
    with torch.no_grad():
        by_targets = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        by_shift = lm_loss(model(window), window)  # scores positions 0..14, the same predictions
    torch.testing.assert_close(by_targets, by_shift)


# ----- sampling ------------------------------------------------------------------------------


@given(V=st.integers(2, 30), k=st.integers(1, 30), temperature=st.floats(0.2, 3.0), seed=st.integers(0, 10_000))
@SETTINGS
def test_top_k_never_gives_mass_outside_the_k_most_likely(V, k, temperature, seed):
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    probs = sampling_probs(logits, temperature, top_k=k)
    top = logits.topk(min(k, V), dim=-1).indices
    outside = torch.ones_like(probs, dtype=torch.bool).scatter_(-1, top, False)
    assert probs[outside].sum() == 0
    assert ((probs > 0).sum(-1) == min(k, V)).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, dtype=torch.float64))
    draws = sample_next(logits, temperature, top_k=k, generator=torch.Generator().manual_seed(seed))
    assert bool(torch.gather(~outside, 1, draws[:, None]).all())


@given(V=st.integers(2, 30), p=st.floats(0.01, 1.0), seed=st.integers(0, 10_000))
@SETTINGS
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(V, p, seed):
    logits = torch.randn(V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    full = torch.softmax(logits, -1)
    probs = sampling_probs(logits, 1.0, top_p=p)
    kept = (probs > 0)
    order = full.argsort(descending=True)
    n = int(kept.sum())
    assert set(order[:n].tolist()) == set(kept.nonzero().flatten().tolist())  # the n most likely tokens
    assert full[kept].sum() >= p - 1e-12  # enough mass ...
    assert n == 1 or full[order[:n - 1]].sum() < p  # ... and one token fewer would not be
    torch.testing.assert_close(probs[kept], full[kept] / full[kept].sum())


@given(V=st.integers(2, 30), seed=st.integers(0, 10_000))
@SETTINGS
def test_temperature_towards_zero_is_the_argmax(V, seed):
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    greedy = F.one_hot(logits.argmax(-1), V).double()
    assert torch.equal(sampling_probs(logits, 0.0), greedy)
    torch.testing.assert_close(sampling_probs(logits, 1e-4), greedy, atol=1e-6, rtol=0)
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))


# ----- training -------------------------------------------------------------------------------


def test_the_learning_rate_warms_up_then_decays():
    rates = [lr_at(s, 1e-3, 10, 100, 1e-4) for s in range(100)]
    assert rates[:10] == pytest.approx([1e-4 * (s + 1) for s in range(10)])
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert lr_at(100, 1e-3, 10, 100, 1e-4) == pytest.approx(1e-4)


def test_fit_lowers_the_validation_loss_below_uniform():
    corpus = load_char_corpus()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, context_length=16, embed_dim=32, num_heads=2, num_layers=1))
    start = estimate_loss(model, corpus.val, max_windows=32)
    assert start == pytest.approx(math.log(76), abs=0.05)  # untrained: nearly uniform
    history = fit(model, corpus.train, corpus.val, steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_every=30,
                  eval_windows=32, progress=False)
    assert history.val_steps == [0, 30, 60] and len(history.train_loss) == 60
    assert history.val_loss[-1] < unigram_loss(corpus.train, corpus.val, corpus.vocab_size)
    assert estimate_loss(model, corpus.val, max_windows=32) == history.val_loss[-1]  # deterministic


def test_fit_in_bfloat16_autocast_trains_and_keeps_float32_weights():
    corpus = load_char_corpus()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, context_length=16, embed_dim=32, num_heads=2, num_layers=1))
    seen = []
    model.blocks[0].attn.W_query.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    history = fit(model, corpus.train, corpus.val, steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_every=60,
                  eval_windows=32, progress=False, autocast_dtype=torch.bfloat16)
    assert seen.count(torch.bfloat16) == 60  # the 60 training steps ran under autocast ...
    assert seen[0] == seen[-1] == torch.float32  # ... the validations before and after did not
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert history.val_loss[-1] < history.val_loss[0] - 0.5  # it learns: from ln 76 = 4.33 to below 3.83


def test_fit_can_train_through_torch_compile():
    corpus = load_char_corpus()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, context_length=16, embed_dim=32, num_heads=2, num_layers=1))
    traced = []

    def backend(graph_module, example_inputs):  # a torch.compile backend that records that it was used
        traced.append(graph_module)
        return graph_module.forward

    history = fit(model, corpus.train, corpus.val, steps=10, batch_size=8, lr=1e-2, warmup_steps=2, eval_every=10,
                  eval_windows=8, progress=False, compile=backend)
    assert traced, "the training forward pass did not go through torch.compile"
    assert history.val_loss[-1] < history.val_loss[0]


def test_fit_with_muon_orthogonalises_the_block_matrices_and_adam_updates_the_rest():
    torch.manual_seed(0)
    model = small_model(vocab_size=40, embed_dim=32, num_heads=2, num_layers=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lr, ids = 1e-2, torch.randint(40, (400,), generator=torch.Generator().manual_seed(1))
    fit(model, ids, ids, steps=1, batch_size=16, lr=lr, warmup_steps=0, weight_decay=0.0, grad_clip=0.0,
        eval_every=1, eval_windows=2, progress=False, optimizer="muon")
    step = {name: p.detach() - before[name] for name, p in model.named_parameters()}
    # Muon: the update is lr * 0.2 * sqrt(max(A, B)) times a near-orthogonal matrix, so no singular value
    # stands out. AdamW's first step is lr * sign(gradient): its top singular value is about 10x that.
    for name in ("blocks.0.attn.W_query.weight", "blocks.0.mlp.linear1.weight"):  # (32, 32), (128, 32)
        muon_scale = lr * 0.2 * math.sqrt(max(step[name].shape))
        assert torch.linalg.matrix_norm(step[name], ord=2) < 1.5 * muon_scale, name
    # AdamW, for the embedding: the first step moves each entry with a gradient by lr (m / sqrt(v) = sign).
    moved = step["token_embedding.weight"].abs()
    assert moved.max() == pytest.approx(lr, rel=1e-3)


# ----- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("call, error, words", [
    (lambda: GPTConfig(vocab_size=10, embed_dim=10, num_heads=3), ValueError, "num_heads"),
    (lambda: GPTConfig(vocab_size=10, num_heads=4, num_kv_heads=3), ValueError, "num_kv_heads"),
    (lambda: GPTConfig(vocab_size=0), ValueError, "vocab_size"),
    (lambda: GPTConfig(vocab_size=10, dropout=1.0), ValueError, "dropout"),
    (lambda: small_model()(torch.zeros(2, 3)), TypeError, "ids"),
    (lambda: small_model()(torch.zeros(3, dtype=torch.long)), ValueError, "ids"),
    (lambda: small_model()(torch.zeros(1, 17, dtype=torch.long)), ValueError, "context_length"),
    (lambda: small_model()(torch.zeros(1, 3, dtype=torch.long), head_mask=torch.ones(3)), ValueError, "head_mask"),
    (lambda: sampling_probs(torch.randn(5), top_p=0.0), ValueError, "top_p"),
    (lambda: sampling_probs(torch.randn(5), top_k=0), ValueError, "top_k"),
    (lambda: sampling_probs(torch.randn(5), temperature=-1.0), ValueError, "temperature"),
    (lambda: sampling_probs(torch.arange(5)), TypeError, "logits"),
    (lambda: lm_loss(torch.randn(2, 4, 5), torch.zeros(2, 3, dtype=torch.long)), ValueError, "logits"),
    (lambda: lm_loss(torch.randn(2, 1, 5), torch.zeros(2, 1, dtype=torch.long)), ValueError, "T >= 2"),
    (lambda: generate(small_model(), torch.zeros(1, 0, dtype=torch.long), 3), ValueError, "ids"),
    (lambda: train_val_split(torch.zeros(10), 0.1), TypeError, "ids"),
    (lambda: train_val_split(torch.arange(10), 1.5), ValueError, "val_fraction"),
    (lambda: get_batch(torch.arange(10), 2, 10), ValueError, "context_length"),
    (lambda: fit(small_model(), torch.arange(50), torch.arange(50), 1, autocast_dtype=torch.int32), TypeError,
     "autocast_dtype"),
    (lambda: fit(small_model(), torch.arange(50), torch.arange(50), 1, compile=1), TypeError, "compile"),
    (lambda: fit(small_model(), torch.arange(50), torch.arange(50), 1, optimizer="sgd"), ValueError, "optimizer"),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ----- the pictures ---------------------------------------------------------------------------


def test_the_sampling_explorer_and_the_live_plot_draw():
    from course_lib.gpt import TrainHistory
    from course_lib.viz.sampling import LiveLossPlot, sampling_explorer

    tok = CharTokenizer("abcdefghijklmnopqrstuvw")
    model = small_model(spread=0.2)
    explorer = sampling_explorer(model, tok, prompt="abc", temperature=1.0, top_p=1.0, length=10)
    assert explorer.result["kept"] == 23 and len(explorer.result["sample"]) == 10
    assert bytes(explorer.image.value).startswith(b"\x89PNG")
    explorer.controls["top_p"].value = 0.3
    assert explorer.result["kept"] < 23
    bundle = explorer._repr_mimebundle_()
    assert "image/png" in bundle and "top-p 0.30" in bundle["text/plain"]
    plot = LiveLossPlot({"bigram": 2.5})
    plot(TrainHistory(steps=[1, 2], train_loss=[4.0, 3.0], lr=[1e-3, 1e-3], val_steps=[0, 2], val_loss=[4.3, 3.1]))
    assert plot.png.startswith(b"\x89PNG")
