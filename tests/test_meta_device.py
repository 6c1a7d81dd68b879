"""Every public function and module of transformer.py, efficient/ and pretrained.py runs on ``meta``.

A ``meta`` tensor has a shape, a dtype and a device but no values: any read of a value on the
host (``.item()``, ``bool(t)``, ``float(t)``, ``.tolist()``, a data-dependent shape such as
boolean indexing) raises ``RuntimeError``. So a forward pass that runs on ``meta`` proves that it
never waits for a GPU (no host sync), without a GPU. Each case also runs on the CPU, and the
outputs must agree in structure, shape and dtype.

The few public functions whose *result* is a Python number read it on the host by contract;
they are listed in ``HOST_READS`` with the reason, and a test checks that they are the only
ones, and that each raises on ``meta`` (i.e. the list is not stale).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import course_lib.efficient as efficient
import course_lib.efficient.tiled_fast as tiled_fast
import course_lib.pretrained as pretrained
import course_lib.transformer as transformer
from course_lib.efficient import (
    KVCache,
    MemoryTracker,
    decode_step,
    elu_feature_map,
    flash_attention,
    linear_attention,
    median_time,
    online_softmax,
    fixed_mask,
    global_local_mask,
    sliding_window_mask,
    strided_mask,
    tiled_attention,
)
from course_lib.pretrained import (
    BertEmbeddings,
    BertEncoder,
    PostNormEncoderLayer,
    WordPieceTokenizer,
    mean_pool,
)
from course_lib.transformer import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    FeedForward,
    Seq2SeqTransformer,
    alignment_matrix,
    alignment_weight,
    find_alignment_head,
    greedy_decode,
    shift_right,
    teacher_forced_exact_match,
    teacher_forcing_loss,
    train_seq2seq,
)

# The devices every case runs on. (tests/conftest.py may grow a shared `device` fixture; it can
# replace this list.)
DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def _rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _ids(B, T, V, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def _model(device, **kw):
    torch.manual_seed(0)
    options = dict(embed_dim=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, max_len=12)
    options.update(kw)
    return Seq2SeqTransformer(11, 13, **options).to(device).eval()


def _bert(device, tokenizer=None):
    torch.manual_seed(0)
    return BertEncoder(vocab_size=40, embed_dim=16, num_layers=2, num_heads=2, ffn_dim=32, max_positions=16,
                       tokenizer=tokenizer).to(device).eval()


def _tokenizer():
    """A tiny WordPiece tokenizer built in memory (no model files)."""
    tokenizers = pytest.importorskip("tokenizers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "##s"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return WordPieceTokenizer(tok, max_length=16)


def _kv_cache(device):
    k, v, q = _rand(2, 5, 8).to(device), _rand(2, 5, 4, seed=1).to(device), _rand(2, 1, 8, seed=2).to(device)
    cache = KVCache()
    cache.append(k[:, :2], v[:, :2])
    keys, values = cache.append(k[:, 2:4], v[:, 2:4])
    out = decode_step(q, k[:, 4:], v[:, 4:], cache)
    return keys, values, cache.keys, out


def _memory_tracker(device):
    q, k, v = (_rand(2, 6, 8, seed=s).to(device) for s in range(3))
    with MemoryTracker() as tracker:
        out = flash_attention(q, k, v, block_rows=2, block_cols=3)
    return out, tracker.ops


def _alignment(device):
    return torch.tensor([[0, 2, -1, 4], [1, -1, 3, 3]]).to(device)


# Each case: device -> outputs (tensors, possibly nested in tuples, lists, dicts and dataclasses).
# Inputs are made on the CPU (same values for every device) and moved.
CASES = {
    # transformer.py
    "FeedForward": lambda d: FeedForward(16, 32).to(d)(_rand(2, 3, 16).to(d)),
    "EncoderLayer": lambda d: EncoderLayer(16, 2).to(d)(
        _rand(2, 5, 16).to(d), src_key_padding_mask=torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).to(d),
        need_weights=True),
    "DecoderLayer": lambda d: DecoderLayer(16, 2).to(d)(
        _rand(2, 4, 16).to(d), _rand(2, 5, 16, seed=1).to(d), tgt_is_causal=True, need_weights=True),
    "Encoder": lambda d: Encoder(2, 16, 2, norm_first=False).to(d)(_rand(2, 5, 16).to(d), need_weights=True),
    "Decoder": lambda d: Decoder(2, 16, 2).to(d)(_rand(2, 4, 16).to(d), _rand(2, 5, 16, seed=1).to(d),
                                                 need_weights=True),
    "Seq2SeqTransformer": lambda d: _model(d)(_ids(2, 5, 11).to(d), _ids(2, 4, 13, seed=1).to(d)),
    "Seq2SeqTransformer learned": lambda d: _model(d, positional="learned")(_ids(2, 5, 11).to(d),
                                                                           _ids(2, 4, 13, seed=1).to(d)),
    "AttentionMaps": lambda d: _model(d)(
        _ids(2, 5, 11).to(d), _ids(2, 4, 13, seed=1).to(d),
        src_key_padding_mask=torch.tensor([[True] * 5, [True] * 2 + [False] * 3]).to(d), need_weights=True),
    "shift_right": lambda d: shift_right(_ids(2, 4, 13).to(d), 1),
    "teacher_forcing_loss": lambda d: teacher_forcing_loss(_model(d), _ids(2, 5, 11).to(d),
                                                           _ids(2, 4, 13, seed=1).to(d), 1, pad_id=0),
    "greedy_decode": lambda d: greedy_decode(_model(d), _ids(2, 5, 11).to(d), 6, 1),
    "greedy_decode eos": lambda d: greedy_decode(_model(d), _ids(2, 5, 11).to(d), 10, 1, eos_id=2, pad_id=0),
    "alignment_matrix": lambda d: alignment_matrix(_alignment(d), S=5, dtype=torch.float64),
    "alignment_weight": lambda d: alignment_weight(torch.softmax(_rand(2, 3, 4, 5), -1).to(d), _alignment(d)),
    # efficient/
    "online_softmax": lambda d: online_softmax(_rand(3, 7, dtype=torch.float64).to(d), block_size=3),
    "flash_attention": lambda d: flash_attention(*(_rand(2, 6, 8, seed=s).to(d) for s in range(3)),
                                                 is_causal=True, block_rows=2, block_cols=4),
    "tiled_attention": lambda d: tiled_attention(*(_rand(2, 2, 6, 8, seed=s).to(d) for s in range(3)),
                                                 block_size=4),
    "tiled_attention causal": lambda d: tiled_attention(*(_rand(2, 6, 8, seed=s).to(d) for s in range(3)),
                                                        is_causal=True, block_size=4),
    "tiled_attention bool mask": lambda d: tiled_attention(
        *(_rand(2, 6, 8, seed=s).to(d) for s in range(3)), attn_mask=sliding_window_mask(6, 2).to(d), block_size=4),
    "tiled_attention float mask float64": lambda d: tiled_attention(
        *(_rand(2, 6, 8, seed=s, dtype=torch.float64).to(d) for s in range(3)),
        attn_mask=_rand(6, 6, dtype=torch.float64, seed=4).to(d), block_size=4),
    "KVCache": _kv_cache,
    "decode_step": _kv_cache,
    "sliding_window_mask": lambda d: sliding_window_mask(6, 2, S=7).to(d),
    "strided_mask": lambda d: strided_mask(8, 3, device=d),
    "fixed_mask": lambda d: fixed_mask(8, 4, summary=1, device=d),
    "global_local_mask": lambda d: global_local_mask(8, 2, global_tokens=1, device=d),
    "elu_feature_map": lambda d: elu_feature_map(_rand(2, 5, 8).to(d)),
    "linear_attention": lambda d: linear_attention(*(_rand(2, 6, 8, seed=s).to(d) for s in range(3))),
    "MemoryTracker": _memory_tracker,
    "median_time": lambda d: median_time(lambda: tiled_attention(*(_rand(2, 6, 8).to(d),) * 3), reps=1, device=d),
    # pretrained.py
    "BertEmbeddings": lambda d: BertEmbeddings(40, 2, 16, 16).to(d).eval()(_ids(2, 5, 40).to(d),
                                                                           torch.zeros(2, 5, dtype=torch.long).to(d)),
    "PostNormEncoderLayer": lambda d: PostNormEncoderLayer(16, 2, 32).to(d).eval()(
        _rand(2, 5, 16).to(d), key_padding_mask=torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).to(d)),
    "BertEncoder": lambda d: _bert(d)(_ids(2, 5, 40).to(d),
                                      attention_mask=torch.tensor([[1] * 5, [1] * 3 + [0] * 2]).to(d),
                                      head_mask=torch.ones(2, 2, 2).to(d)),
    "EncoderOutput": lambda d: _bert(d, _tokenizer()).encode(["the cat sat", "the mats"]),
    "WordPieceTokenizer": lambda d: _tokenizer()(["the cat sat on the mat", "cats"], device=d),
    "TokenizedBatch": lambda d: _tokenizer()("the cat").to(d),
    "mean_pool": lambda d: mean_pool(_rand(2, 5, 16).to(d), torch.tensor([[1] * 5, [1] * 2 + [0] * 3]).to(d)),
}

# Public names whose result is a Python number: reading it on the host is their contract (an
# evaluation or a training loop, never a forward pass). Each reads once per call (train_seq2seq:
# once at the end, plus what `evaluate` reads; greedy_decode with eos_id, in CASES above, reads
# "has every row ended?" every 8 steps on real devices and never on meta).
HOST_READS = {
    "teacher_forced_exact_match": (
        "returns the exact-match fraction as a Python float",
        lambda d: teacher_forced_exact_match(_model(d), _ids(2, 5, 11).to(d), _ids(2, 4, 13).to(d), 1)),
    "train_seq2seq": (
        "returns the loss history as Python floats (read once, after the last step)",
        lambda d: train_seq2seq(_model(d), _ids(8, 5, 11).to(d), _ids(8, 4, 13).to(d), 1, 2, batch_size=4,
                                progress=False)),
    "find_alignment_head": (
        "returns (layer, head, score) as Python numbers",
        lambda d: find_alignment_head(torch.softmax(_rand(2, 2, 3, 4, 5), -1).to(d), _alignment(d))),
    "alignment_matrix S=None": (
        "S=None reads S = alignment.max() + 1 (a shape from values); pass S to avoid it",
        lambda d: alignment_matrix(_alignment(d))),
}

# Public names that hold no tensor computation to run on a device.
NOT_ON_A_DEVICE = {
    "loglog_slope": "a least-squares fit of Python numbers",
    "MODEL_PACKAGE": "a string, the pip package's name",
    "load_minilm": "loads the 90 MB checkpoint; tests/test_pretrained.py tests it on the CPU, and it is "
                   "BertEncoder, run here on every device, with other weights",
}


def _public_names():
    return set(transformer.__all__) | set(efficient.__all__) | set(pretrained.__all__)


def test_every_public_name_is_run_on_meta_or_listed_with_a_reason():
    covered = {name.split(" ")[0] for name in (*CASES, *HOST_READS)} | set(NOT_ON_A_DEVICE)
    assert covered == _public_names(), (
        f"missing: {sorted(_public_names() - covered)}, unknown: {sorted(covered - _public_names())}")


def _structure(x):
    """The outputs with every tensor replaced by (shape, dtype), and the devices seen."""
    devices = set()

    def walk(x):
        if isinstance(x, torch.Tensor):
            devices.add(x.device.type)
            return ("tensor", tuple(x.shape), x.dtype)
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return (type(x).__name__, {f.name: walk(getattr(x, f.name)) for f in dataclasses.fields(x)})
        if isinstance(x, (list, tuple)):
            return (type(x).__name__, [walk(y) for y in x])
        if isinstance(x, dict):
            return ("dict", {k: walk(y) for k, y in x.items()})
        if isinstance(x, float):
            return ("float",)
        return ("value", x)  # ints, strings, None: equal on every device

    return walk(x), devices


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_on_the_device_with_the_shapes_and_dtypes_of_the_cpu(name, device):
    expected, _ = _structure(CASES[name]("cpu"))
    got, devices = _structure(CASES[name](device))  # on meta: raises if any value is read on the host
    assert got == expected
    assert devices <= {device}, f"outputs on {devices}, expected {device}"
    if name not in ("median_time",):
        assert devices == {device}


@pytest.mark.parametrize("name", sorted(HOST_READS))
def test_the_listed_host_reads_are_real(name):
    """Each function listed as reading on the host runs on the CPU and raises on meta (so the list is not stale)."""
    _, call = HOST_READS[name]
    call("cpu")
    with pytest.raises(RuntimeError, match="meta"):
        call("meta")


def test_memory_tracker_sees_the_same_operations_on_meta_and_counts_no_bytes_there():
    q, k, v = (_rand(2, 6, 8, seed=s) for s in range(3))
    trackers = {}
    for device in ("cpu", "meta"):
        inputs = [t.to(device) for t in (q, k, v)]
        with MemoryTracker() as trackers[device]:
            flash_attention(*inputs, block_rows=2, block_cols=3)
    assert trackers["cpu"].peak > 0 and trackers["meta"].peak == 0  # meta tensors own no storage
    assert trackers["meta"].ops == trackers["cpu"].ops and len(trackers["cpu"].ops) > 10


def test_tiled_attention_takes_the_running_max_path_off_the_cpu(monkeypatch):
    """The no-rescale shortcut reads a bound on the host: it must not even be asked on meta."""
    def refuse(*args, **kwargs):
        raise AssertionError("_no_overflow_possible called off the CPU")

    monkeypatch.setattr(tiled_fast, "_no_overflow_possible", refuse)
    q, k, v = (_rand(2, 6, 8, seed=s).to("meta") for s in range(3))
    assert tiled_attention(q, k, v, block_size=4).shape == (2, 6, 8)
    with pytest.raises(AssertionError, match="off the CPU"):  # and it is asked on the CPU
        tiled_attention(*(t.to("cpu") for t in (_rand(2, 6, 8), _rand(2, 6, 8), _rand(2, 6, 8))))


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_running_max_path_equals_pytorch(monkeypatch, is_causal, dtype):
    """The path every non-CPU device takes, forced on the CPU, gives PyTorch's numbers."""
    monkeypatch.setattr(tiled_fast, "_no_overflow_possible", lambda *a, **k: False)
    q, k, v = (_rand(2, 3, 10, 8, seed=s, dtype=dtype) for s in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(tiled_attention(q, k, v, is_causal=is_causal, block_size=3), expected, **tol)


def test_alignment_weight_without_boolean_indexing_is_the_mean_over_aligned_positions():
    """The masked-sum form equals the plain mean over the aligned positions (computed by hand here)."""
    weights = torch.softmax(_rand(2, 3, 4, 5, dtype=torch.float64), -1)
    alignment = torch.tensor([[0, 2, -1, 4], [1, -1, 3, 3]])
    aligned = [(b, i) for b in range(2) for i in range(4) if alignment[b, i] >= 0]
    expected = torch.stack([
        sum(weights[b, h, i, alignment[b, i]] for b, i in aligned) / len(aligned) for h in range(3)])
    torch.testing.assert_close(alignment_weight(weights, alignment), expected)


def test_values_are_checked_on_the_cpu_only():
    """On the CPU bad ids still raise a ValueError naming the argument; on meta only shapes are checked."""
    model = _model("cpu")
    with pytest.raises(ValueError, match="src ids must lie in"):
        model(torch.full((2, 3), 11), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids must lie in"):
        _bert("cpu")(torch.full((1, 3), 40))
    with pytest.raises(ValueError, match="max_len"):  # a shape check: on every device
        _model("meta")(torch.ones(2, 13, dtype=torch.long, device="meta"), torch.ones(2, 2, dtype=torch.long, device="meta"))
    assert _model("meta")(torch.full((2, 3), 11, device="meta"), torch.ones(2, 2, dtype=torch.long, device="meta")).shape \
        == (2, 2, 13)


def test_median_time_on_meta_returns_a_duration():
    seconds = CASES["median_time"]("meta")
    assert isinstance(seconds, float) and seconds >= 0 and math.isfinite(seconds)


def test_cross_attention_translator_runs_on_meta():
    from course_lib.data.translation import CrossAttentionTranslator

    torch.manual_seed(0)
    model = CrossAttentionTranslator().to("meta")
    logits, weights = model(_ids(2, 5, 10).to("meta"), torch.tensor([5, 3]).to("meta"), need_weights=True)
    assert logits.device.type == "meta" and weights.shape == (2, 1, 5, 5)


def test_date_data_rows_on_meta_pick_the_dates_without_reading_the_device():
    from course_lib.data.tasks import make_date_splits

    train, _, _ = make_date_splits(n_train=8, n_val=2, n_test=2)
    on_meta = train.to("meta")
    for index, picked in (([5, 1], [5, 1]), (torch.tensor([5, 1]), [5, 1]), (slice(1, 6, 4), [1, 5])):
        rows = on_meta[index]
        assert rows.src.device.type == "meta" and rows.src.shape == (2, train.src.shape[1])
        assert rows.dates == [train.dates[i] for i in picked]
