"""course_lib: the package behind "Attention, from dot products to transformers".

Every notebook imports it; nothing a notebook needs twice is defined in a notebook.
See README.md for the chapter map, ARCHITECTURE.md for the layout, and each function's docstring
for the chapter that teaches it.

The top level holds one module per lesson idea, in the course's order (``attention``,
``masking``, ``multihead``, ``positional``, ``transformer``, ``pretrained``, ``gpt``), plus ``device``.
Below it: ``efficient/`` (chapter 09), ``data/``, ``viz/``, ``checks/`` (in-notebook feedback),
``grading/`` (the batch grader) and ``authoring/`` (the instructor's tools).
"""

from . import attention, data, device, efficient, gpt, masking, multihead, positional, transformer, viz
from .data import tasks, toy  # noqa: F401  (also course_lib.toy / course_lib.tasks, as before)
from .attention import dot_product_scores, scaled_dot_product_attention, softmax
from .device import get_device, set_seed
from .masking import causal_mask, combine_masks, padding_mask, to_additive
from .multihead import MultiHeadAttention, merge_heads, split_heads
from .positional import LearnedPositionalEmbedding, alibi_bias, alibi_slopes, apply_rope, sinusoidal_encoding
from .transformer import Decoder, DecoderLayer, Encoder, EncoderLayer, Seq2SeqTransformer

from ._version import __version__

__all__ = [
    # modules
    "attention",
    "data",
    "device",
    "efficient",
    "gpt",
    "masking",
    "multihead",
    "positional",
    "tasks",
    "toy",
    "transformer",
    "viz",
    # course_lib.device (every notebook's first cell)
    "get_device",
    "set_seed",
    # course_lib.attention (chapters 01-03)
    "dot_product_scores",
    "softmax",
    "scaled_dot_product_attention",
    # course_lib.masking (chapter 04)
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "to_additive",
    # course_lib.multihead (chapter 05)
    "split_heads",
    "merge_heads",
    "MultiHeadAttention",
    # course_lib.positional (chapter 07)
    "sinusoidal_encoding",
    "LearnedPositionalEmbedding",
    "apply_rope",
    "alibi_slopes",
    "alibi_bias",
    # course_lib.transformer (chapter 08)
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "Seq2SeqTransformer",
]
