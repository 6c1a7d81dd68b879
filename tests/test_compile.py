"""torch.compile: the course's attention, multi-head attention and an encoder layer compile as one graph.

``fullgraph=True`` raises at the first graph break, so each test fails if any Python-side check
(argument validation, a host read such as ``.item()`` or ``bool(tensor)``, a data-dependent
shape) splits the graph. Backends: ``eager`` (Dynamo's capture only), ``aot_eager`` (also traces
the backward with AOTAutograd) and, where a C++ compiler exists, the default ``inductor`` once.
Compiled outputs must equal eager ones.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch._dynamo

from course_lib import EncoderLayer, MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention

BACKENDS = ["eager", "aot_eager"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch (no cache hits from another test's graphs)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, 5, 8, generator=g)
    k = torch.randn(2, 3, 7, 8, generator=g)
    v = torch.randn(2, 3, 7, 4, generator=g)
    mask = padding_mask(torch.tensor([7, 0]), 7)[:, None, None, :]  # (B, 1, 1, S); batch 1 sees nothing
    return q, k, v, mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["plain", "bool mask", "float mask", "causal", "weights"])
def test_scaled_dot_product_attention_compiles_without_graph_breaks(backend, kind):
    q, k, v, mask = _inputs()
    kwargs = {
        "plain": {},
        "bool mask": {"attn_mask": mask},
        "float mask": {"attn_mask": torch.randn(5, 7), "scale": 0.3},
        "causal": {"is_causal": True},
        "weights": {"attn_mask": mask, "return_weights": True},
    }[kind]
    compiled = torch.compile(scaled_dot_product_attention, fullgraph=True, backend=backend)
    got, expected = compiled(q, k, v, **kwargs), scaled_dot_product_attention(q, k, v, **kwargs)
    for a, b in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_gradients_through_the_compiled_graph(backend):
    q, k, v, _ = _inputs(1)
    leaves = [t.double().requires_grad_() for t in (q, k, v)]
    compiled = torch.compile(scaled_dot_product_attention, fullgraph=True, backend=backend)
    grads = torch.autograd.grad(compiled(*leaves, is_causal=True).square().sum(), leaves)
    expected = torch.autograd.grad(scaled_dot_product_attention(*leaves, is_causal=True).square().sum(), leaves)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_attention_compiles(backend):
    q, k, v, mask = (t.half() if t.is_floating_point() else t for t in _inputs(2))
    compiled = torch.compile(scaled_dot_product_attention, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(q, k, v, attn_mask=mask), scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("backend", BACKENDS)
def test_multihead_attention_compiles_without_graph_breaks(backend):
    torch.manual_seed(0)
    module = MultiHeadAttention(8, 2, kdim=6, vdim=5).eval()
    g = torch.Generator().manual_seed(3)
    x, mem, val = torch.randn(2, 4, 8, generator=g), torch.randn(2, 6, 6, generator=g), torch.randn(2, 6, 5, generator=g)
    keep = padding_mask(torch.tensor([6, 3]), 6)
    kwargs = dict(key_padding_mask=keep, attn_mask=causal_mask(4, 6), need_weights=True)
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    with torch.no_grad():
        got, expected = compiled(x, mem, val, **kwargs), module(x, mem, val, **kwargs)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoder_layer_compiles_without_graph_breaks(backend):
    torch.manual_seed(0)
    layer = EncoderLayer(8, 2, dim_feedforward=16).eval()
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(4))
    keep = padding_mask(torch.tensor([5, 2]), 5)
    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    with torch.no_grad():
        got, expected = compiled(x, src_key_padding_mask=keep), layer(x, src_key_padding_mask=keep)
    torch.testing.assert_close(got, expected)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="the inductor backend compiles C++ on the CPU, and no C++ compiler (g++/c++) is on PATH")
def test_attention_compiles_with_inductor():
    import torch._inductor.config as inductor_config

    q, k, v, mask = _inputs(5)
    # compile_threads=1: generate and build the C++ in this process, not in a pool of worker
    # processes (each would import torch again; on a 2-core machine that costs more than it saves)
    with inductor_config.patch(compile_threads=1):
        compiled = torch.compile(scaled_dot_product_attention, fullgraph=True)  # the default backend, inductor
        got = compiled(q, k, v, attn_mask=mask)
    torch.testing.assert_close(got, scaled_dot_product_attention(q, k, v, attn_mask=mask))
