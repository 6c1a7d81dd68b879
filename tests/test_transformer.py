"""course_lib.transformer against PyTorch's nn.Transformer* layers, the paper's wiring, and its own promises."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib.masking import causal_mask, padding_mask
from course_lib.transformer import (
    AttentionMaps,
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    FeedForward,
    Seq2SeqTransformer,
    alignment_weight,
    find_alignment_head,
    greedy_decode,
    shift_right,
    teacher_forcing_loss,
)

SETTINGS = settings(max_examples=12, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize(module, seed, scale=0.4, fan_in_scaled=False):
    """Random weights everywhere (torch initialises biases and LayerNorms to 0 / 1, which hides mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * noise)
            elif "embedding" in name:
                p.copy_(noise)  # as nn.Embedding: entries of size 1
            elif fan_in_scaled:
                p.copy_(scale * noise / p.shape[1] ** 0.5 if p.dim() == 2 else 0.2 * noise)
            else:
                p.copy_(scale * noise)
    return module


def assert_close(actual, expected):
    """1e-5 in float32, relative to the output's scale (LayerNorm outputs are of size 1)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=1e-5 * scale, rtol=1e-5)


def lengths_for(g, B, S):
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S
    return lengths


# ------------------------------------------------------------------------------------------
# Equivalence with PyTorch's layers (the requirement: 1e-5 in float32).
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]), training=st.booleans(),
       B=st.integers(1, 3), S=st.integers(1, 7), H=st.sampled_from([1, 2, 4]), seed=st.integers(0, 999))
def test_encoder_layer_equals_torch(norm_first, activation, training, B, S, H, seed):
    torch.manual_seed(seed)
    D = 4 * H * 2
    ref = randomize(nn.TransformerEncoderLayer(D, H, 3 * D, dropout=0.0, activation=activation, batch_first=True,
                                               norm_first=norm_first), seed)
    ref.train(training)  # eval mode may take PyTorch's fused fast path: the same numbers within 1e-5
    ours = EncoderLayer.from_torch(ref)
    assert ours.norm_first == norm_first and ours.training == training
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, D, generator=g)
    keep = padding_mask(lengths_for(g, B, S), S)  # (B, S) True = real
    with torch.no_grad():
        expected = ref(x, src_key_padding_mask=~keep)  # torch: True = padding
        got = ours(x, src_key_padding_mask=keep)
        assert_close(got[keep], expected[keep])  # padded positions are don't-care (torch's fast path zeroes them)
        assert_close(ours(x, is_causal=True), ref(x, src_mask=~causal_mask(S), is_causal=True))


@SETTINGS
@given(norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]), training=st.booleans(),
       B=st.integers(1, 3), L=st.integers(1, 6), S=st.integers(1, 6), seed=st.integers(0, 999))
def test_decoder_layer_equals_torch(norm_first, activation, training, B, L, S, seed):
    torch.manual_seed(seed)
    D, H = 16, 2
    ref = randomize(nn.TransformerDecoderLayer(D, H, 24, dropout=0.0, activation=activation, batch_first=True,
                                               norm_first=norm_first), seed)
    ref.train(training)
    ours = DecoderLayer.from_torch(ref)
    g = torch.Generator().manual_seed(seed)
    tgt, memory = torch.randn(B, L, D, generator=g), torch.randn(B, S, D, generator=g)
    keep = padding_mask(lengths_for(g, B, S), S)
    with torch.no_grad():
        expected = ref(tgt, memory, tgt_mask=~causal_mask(L), memory_key_padding_mask=~keep, tgt_is_causal=True)
        assert_close(ours(tgt, memory, memory_key_padding_mask=keep), expected)
        # without the causal mask, and with a memory mask instead of a padding mask
        memory_mask = torch.rand(L, S, generator=g) > 0.3
        memory_mask[:, 0] = True
        expected = ref(tgt, memory, memory_mask=~memory_mask)
        assert_close(ours(tgt, memory, memory_mask=memory_mask, tgt_is_causal=False), expected)


def test_from_torch_copies_sizes_and_is_independent():
    ref = nn.TransformerDecoderLayer(8, 2, 20, dropout=0.1, activation="gelu", batch_first=True, bias=False)
    ours = DecoderLayer.from_torch(ref)
    assert ours.feed_forward.linear1.out_features == 20 and ours.feed_forward.activation_name == "gelu"
    assert ours.norm1.bias is None and ours.self_attention.W_query.bias is None
    assert ours.self_attention.dropout == 0.1 and ours.dropout1.p == 0.1
    with torch.no_grad():
        ours.feed_forward.linear1.weight.zero_()
    assert ref.linear1.weight.abs().sum() > 0  # a copy, not a view
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_from_torch_keeps_dtype():
    ref = randomize(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, dtype=torch.float64), 0)
    ours = EncoderLayer.from_torch(ref)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    out = ours(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref.train()(x))


def test_stacks_equal_torch_stacks():
    torch.manual_seed(0)
    D, H, N = 16, 4, 3
    layer = nn.TransformerEncoderLayer(D, H, 32, dropout=0.0, batch_first=True, norm_first=True)
    ref_enc = randomize(nn.TransformerEncoder(layer, N, norm=nn.LayerNorm(D), enable_nested_tensor=False), 1)
    dlayer = nn.TransformerDecoderLayer(D, H, 32, dropout=0.0, batch_first=True, norm_first=True)
    ref_dec = randomize(nn.TransformerDecoder(dlayer, N, norm=nn.LayerNorm(D)), 2)
    enc, dec = Encoder(N, D, H, 32), Decoder(N, D, H, 32)
    enc.layers = nn.ModuleList(EncoderLayer.from_torch(m) for m in ref_enc.layers)
    dec.layers = nn.ModuleList(DecoderLayer.from_torch(m) for m in ref_dec.layers)
    enc.final_norm.load_state_dict(ref_enc.norm.state_dict())
    dec.final_norm.load_state_dict(ref_dec.norm.state_dict())
    g = torch.Generator().manual_seed(3)
    src, tgt = torch.randn(2, 5, D, generator=g), torch.randn(2, 4, D, generator=g)
    keep = padding_mask([5, 3], 5)
    memory, w_enc = enc(src, src_key_padding_mask=keep, need_weights=True)
    assert_close(memory, ref_enc(src, src_key_padding_mask=~keep))
    out, w_self, w_cross = dec(tgt, memory, memory_key_padding_mask=keep, need_weights=True)
    assert_close(out, ref_dec(tgt, memory, tgt_mask=~causal_mask(4), memory_key_padding_mask=~keep, tgt_is_causal=True))
    assert len(w_enc) == len(w_self) == len(w_cross) == N
    assert w_enc[0].shape == (2, H, 5, 5) and w_self[0].shape == (2, H, 4, 4) and w_cross[0].shape == (2, H, 4, 5)


def test_post_ln_stacks_have_no_final_norm():
    assert Encoder(2, 8, 2, norm_first=False).final_norm is None
    assert isinstance(Decoder(2, 8, 2).final_norm, nn.LayerNorm)


# ------------------------------------------------------------------------------------------
# The wiring, against the paper's formulas written out here.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_matches_the_formula(norm_first):
    layer = randomize(DecoderLayer(8, 2, 16, norm_first=norm_first), 4)
    g = torch.Generator().manual_seed(4)
    x, memory = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    sa = lambda h: layer.self_attention(h, is_causal=True)  # noqa: E731
    ca = lambda h: layer.cross_attention(h, memory)  # noqa: E731
    ff = lambda h: layer.feed_forward.linear2(torch.relu(layer.feed_forward.linear1(h)))  # noqa: E731
    n1, n2, n3 = layer.norm1, layer.norm2, layer.norm3
    if norm_first:
        h = x + sa(n1(x))
        h = h + ca(n2(h))
        expected = h + ff(n3(h))
    else:
        h = n1(x + sa(x))
        h = n2(h + ca(h))
        expected = n3(h + ff(h))
    torch.testing.assert_close(layer(x, memory), expected)


def test_feed_forward_acts_on_each_token_alone():
    ff = randomize(FeedForward(6, 12, "gelu"), 0)
    x = torch.randn(2, 4, 6)
    out = ff(x)
    for t in range(4):
        torch.testing.assert_close(out[:, t], ff(x[:, t]))
    torch.testing.assert_close(out, ff.linear2(torch.nn.functional.gelu(ff.linear1(x))))


def test_decoder_layer_is_causal_on_the_target_and_not_on_the_source():
    layer = randomize(DecoderLayer(16, 4, 32), 5)
    g = torch.Generator().manual_seed(5)
    tgt, memory = torch.randn(2, 6, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    keep = padding_mask([5, 3], 5)
    base, w_self, w_cross = layer(tgt, memory, memory_key_padding_mask=keep, need_weights=True)
    for t in range(5):  # changing target tokens after t leaves positions 0..t unchanged
        changed = tgt.clone()
        changed[:, t + 1:] = torch.randn(2, 5 - t, 16, generator=g)
        after = layer(changed, memory, memory_key_padding_mask=keep)
        torch.testing.assert_close(after[:, : t + 1], base[:, : t + 1])
        assert (after[:, t + 1] - base[:, t + 1]).abs().max() > 1e-3
    changed = memory.clone()
    changed[0, 4] = torch.randn(16, generator=g)  # the last real source token of sequence 0
    assert (layer(changed, memory=changed, memory_key_padding_mask=keep)[0, 0] - base[0, 0]).abs().max() > 1e-3
    changed = memory.clone()
    changed[1, 3:] = torch.randn(2, 16, generator=g)  # the pads of sequence 1
    torch.testing.assert_close(layer(tgt, changed, memory_key_padding_mask=keep)[1], base[1])
    assert not w_self.triu(1).any()
    assert (w_cross[1, ..., 3:] == 0).all() and (w_cross[0] > 0).all()
    torch.testing.assert_close(w_cross.sum(-1), torch.ones(2, 4, 6))


# ------------------------------------------------------------------------------------------
# The encoder-decoder model, training and decoding.
# ------------------------------------------------------------------------------------------


def small_model(positional="sinusoidal", seed=0, **kwargs):
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(11, 9, embed_dim=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                               dim_feedforward=32, max_len=12, positional=positional, **kwargs)
    return randomize(model, seed, scale=2.0, fan_in_scaled=True).eval()


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", None])
def test_model_shapes_weights_and_causality(positional):
    model = small_model(positional)
    g = torch.Generator().manual_seed(1)
    src, tgt_in = torch.randint(1, 11, (3, 6), generator=g), torch.randint(1, 9, (3, 5), generator=g)
    keep = padding_mask([6, 4, 2], 6)
    logits, maps = model(src, tgt_in, src_key_padding_mask=keep, need_weights=True)
    assert logits.shape == (3, 5, 9) and isinstance(maps, AttentionMaps)
    assert [w.shape for w in maps.encoder] == [(3, 2, 6, 6)] * 2
    assert [w.shape for w in maps.decoder_cross] == [(3, 2, 5, 6)] * 2
    for w in maps.decoder_cross:
        assert (w[2, ..., 2:] == 0).all()  # sequence 2 has 2 real source tokens
    torch.testing.assert_close(logits, model(src, tgt_in, src_key_padding_mask=keep))
    for t in range(4):  # logits at position t use tgt_in[:, :t+1] only
        changed = tgt_in.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] % 8) + 1
        torch.testing.assert_close(model(src, changed, keep)[:, : t + 1], logits[:, : t + 1])


def test_without_positions_the_source_is_a_set():
    model = small_model(None)
    g = torch.Generator().manual_seed(2)
    src, tgt_in = torch.randint(1, 11, (2, 7), generator=g), torch.randint(1, 9, (2, 4), generator=g)
    perm = torch.randperm(7, generator=g)
    torch.testing.assert_close(model(src[:, perm], tgt_in), model(src, tgt_in))
    with_positions = small_model("sinusoidal")
    assert (with_positions(src[:, perm], tgt_in) - with_positions(src, tgt_in)).abs().max() > 1e-3


def test_shift_right_and_loss_match_their_definitions():
    tgt = torch.tensor([[5, 6, 7], [8, 2, 3]])
    assert shift_right(tgt, 1).tolist() == [[1, 5, 6], [1, 8, 2]]
    model = small_model()
    src = torch.randint(1, 11, (2, 4), generator=torch.Generator().manual_seed(3))
    logits = model(src, shift_right(tgt, 1))  # (B, L, V)
    logp = logits.log_softmax(-1)
    expected = -torch.stack([logp[b, i, tgt[b, i]] for b in range(2) for i in range(3)]).mean()
    torch.testing.assert_close(teacher_forcing_loss(model, src, tgt, 1), expected)
    # pad_id: those target positions are left out
    padded = torch.tensor([[5, 6, 0], [8, 2, 3]])
    logits = model(src, shift_right(padded, 1)).log_softmax(-1)
    expected = -torch.stack([logits[b, i, padded[b, i]] for b, i in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]]).mean()
    torch.testing.assert_close(teacher_forcing_loss(model, src, padded, 1, pad_id=0), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_decode_reproduces_itself_under_teacher_forcing(seed):
    """A greedy output y satisfies y_t = argmax logits_t(src, [bos, y_0..y_{t-1}]) for every t at once."""
    model = small_model(seed=seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, 11, (4, 5), generator=g)
    keep = padding_mask([5, 5, 3, 1], 5)
    out = greedy_decode(model, src, 8, 1, src_key_padding_mask=keep)
    assert out.shape == (4, 8) and out.dtype == torch.long
    logits = model(src, shift_right(out, 1), src_key_padding_mask=keep)
    assert torch.equal(logits.argmax(-1), out)
    assert len(set(out.flatten().tolist())) > 1  # the test model does not emit one token forever


def test_greedy_decode_stops_at_eos_and_pads():
    model = small_model(seed=4)
    src = torch.randint(1, 11, (6, 5), generator=torch.Generator().manual_seed(4))
    free = greedy_decode(model, src, 8, 1)
    eos = int(free[0, 2])  # a token that sequence 0 emits at step 2
    out = greedy_decode(model, src, 8, 1, eos_id=eos, pad_id=0)
    for row_free, row in zip(free.tolist(), out.tolist()):
        stop = row_free.index(eos) if eos in row_free else 8
        assert row[: stop + 1] == row_free[: stop + 1]
        assert all(t == 0 for t in row[stop + 1:])
    one = greedy_decode(model, src[:1], 8, 1, eos_id=eos)
    assert one.shape == (1, 8) and one[0].tolist() == out[0].tolist()  # stopped early, still padded to max_len


def test_greedy_decode_reads_the_end_on_the_host_every_8_steps():
    """Once every row has ended, decoding stops at the next multiple of 8 steps (not at max_len, not every step)."""
    model = small_model(seed=4)
    src = torch.randint(1, 11, (1, 5), generator=torch.Generator().manual_seed(4))
    free = greedy_decode(model, src, 11, 1)
    eos = int(free[0, 1])  # the row ends at step 2 (or at step 1 if it emits the same token first)
    calls = []
    decode = model.decode
    model.decode = lambda *args, **kwargs: calls.append(1) or decode(*args, **kwargs)
    out = greedy_decode(model, src, 11, 1, eos_id=eos, pad_id=0)
    assert len(calls) == 8  # read at step 8, the first multiple of 8 after the end
    stop = free[0].tolist().index(eos)
    assert out[0, : stop + 1].tolist() == free[0, : stop + 1].tolist() and (out[0, stop + 1:] == 0).all()
    assert out.shape == (1, 11)


def test_alignment_weight_and_head():
    B, H, L, S = 2, 3, 4, 5
    alignment = torch.tensor([[0, 2, -1, 4], [1, -1, 3, 3]])
    ideal = torch.zeros(B, L, S)
    for b in range(B):
        for i in range(L):
            if alignment[b, i] >= 0:
                ideal[b, i, alignment[b, i]] = 1.0
            else:
                ideal[b, i, 0] = 1.0  # unaligned rows never count
    uniform = torch.full((B, L, S), 1 / S)
    weights = torch.stack([ideal, uniform, 0.5 * ideal + 0.5 * uniform], dim=1)  # (B, H, L, S)
    torch.testing.assert_close(alignment_weight(weights, alignment), torch.tensor([1.0, 0.2, 0.6]))
    stacked = torch.stack([weights[:, [1, 2, 1]], weights[:, [1, 1, 0]]])  # (N=2, B, H, L, S): best = layer 1, head 2
    assert find_alignment_head(stacked, alignment) == (1, 2, pytest.approx(1.0))
    assert find_alignment_head(list(stacked), alignment) == find_alignment_head(stacked, alignment)


# ------------------------------------------------------------------------------------------
# Bad inputs: the error names the argument.
# ------------------------------------------------------------------------------------------

BAD = [
    (lambda: EncoderLayer(8, 3), ValueError, "num_heads"),
    (lambda: EncoderLayer(8, 2, activation="tanh"), ValueError, "activation"),
    (lambda: EncoderLayer(8, 2, dropout=1.5), ValueError, "dropout"),
    (lambda: DecoderLayer(8, 2, norm_first="yes"), TypeError, "norm_first"),
    (lambda: Encoder(0, 8, 2), ValueError, "num_layers"),
    (lambda: Seq2SeqTransformer(10, 10, positional="rope"), ValueError, "positional"),
    (lambda: EncoderLayer(8, 2)(torch.randn(2, 3, 6)), ValueError, "src"),
    (lambda: DecoderLayer(8, 2)(torch.randn(2, 3, 8), torch.randn(3, 4, 8)), ValueError, "memory"),
    (lambda: DecoderLayer(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 8),
                                memory_key_padding_mask=torch.ones(2, 3, dtype=torch.bool)), ValueError, "key_padding_mask"),
    (lambda: small_model()(torch.randn(2, 3), torch.ones(2, 2, dtype=torch.long)), ValueError, "src"),
    (lambda: small_model()(torch.ones(2, 13, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)), ValueError, "max_len"),
    (lambda: small_model()(torch.full((2, 3), 11), torch.ones(2, 2, dtype=torch.long)), ValueError, "src"),
    (lambda: greedy_decode(small_model(), torch.ones(2, 3, dtype=torch.long), 0, 1), ValueError, "max_len"),
    (lambda: shift_right(torch.ones(2, 3, dtype=torch.long), -1), TypeError, "bos_id"),
    (lambda: EncoderLayer.from_torch(nn.TransformerEncoderLayer(8, 2)), ValueError, "batch_first"),
    (lambda: DecoderLayer.from_torch(nn.TransformerEncoderLayer(8, 2, batch_first=True)), TypeError, "layer"),
    (lambda: alignment_weight(torch.rand(2, 1, 3, 4), torch.zeros(2, 4, dtype=torch.long)), ValueError, "alignment"),
    (lambda: alignment_weight(torch.rand(2, 1, 3, 4), torch.full((2, 3), -1)), ValueError, "alignment"),
    (lambda: find_alignment_head(torch.rand(2, 1, 3, 4), torch.zeros(2, 3, dtype=torch.long)), ValueError, "cross_weights"),
]


@pytest.mark.parametrize("call, error, name", BAD, ids=[f"{i}-{n}" for i, (_, _, n) in enumerate(BAD)])
def test_bad_inputs_name_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


def _copy_task(n=64, length=5, vocab=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, vocab, (n, length), generator=g)  # (N, S): ids 1..vocab-1, 0 is BOS
    return src, src.clone()


def _tiny_model(vocab=7, seed=0):
    torch.manual_seed(seed)
    return Seq2SeqTransformer(vocab, vocab, embed_dim=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                              dim_feedforward=32, max_len=8)


def test_train_seq2seq_learns_and_is_reproducible():
    from course_lib.transformer import teacher_forced_exact_match, train_seq2seq

    src, tgt = _copy_task()
    calls = []

    def evaluate(model):
        calls.append(model.training)
        return teacher_forced_exact_match(model, src, tgt, 0)

    model = _tiny_model()
    history = train_seq2seq(model, src, tgt, 0, 40, batch_size=16, lr=1e-2, evaluate=evaluate, eval_every=10,
                            progress=False)
    assert history["step"] == list(range(1, 41)) and len(history["loss"]) == 40
    assert history["val_step"] == [0, 10, 20, 30, 40] and calls == [False] * 5  # evaluated in eval mode
    assert sum(history["loss"][-5:]) < 0.8 * sum(history["loss"][:5])  # it learns
    assert not model.training  # ends in eval mode
    again = train_seq2seq(_tiny_model(), src, tgt, 0, 40, batch_size=16, lr=1e-2, progress=False)
    assert again["loss"] == history["loss"]  # the same seed gives the same batches and losses
    assert 0.0 <= history["val_exact"][-1] <= 1.0


def test_teacher_forced_exact_match_counts_whole_sequences_and_restores_the_mode():
    from course_lib.transformer import teacher_forced_exact_match

    src, tgt = _copy_task(n=8)
    model = _tiny_model()
    model.train()
    score = teacher_forced_exact_match(model, src, tgt, 0)
    with torch.no_grad():
        model.eval()
        logits = model(src, shift_right(tgt, 0))  # (N, L, V)
        model.train()
    expected = (logits.argmax(-1) == tgt).all(dim=1).float().mean().item()
    assert score == expected and model.training


def test_train_seq2seq_names_bad_arguments():
    from course_lib.transformer import train_seq2seq

    src, tgt = _copy_task(n=4)
    with pytest.raises(ValueError, match="steps"):
        train_seq2seq(_tiny_model(), src, tgt, 0, 0, progress=False)
    with pytest.raises(ValueError, match="same N"):
        train_seq2seq(_tiny_model(), src, tgt[:2], 0, 3, progress=False)
