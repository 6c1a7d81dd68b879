"""course_lib: the package behind "Attention, from dot products to transformers".

Every notebook imports it; nothing a notebook needs twice is defined in a notebook.
See README.md for the chapter map and DESIGN (shared/) for the API contract.
"""

from . import attention, device, masking
from .attention import dot_product_scores, scaled_dot_product_attention, softmax
from .device import get_device, set_seed
from .masking import causal_mask, combine_masks, padding_mask, to_additive

__version__ = "0.1.0"

__all__ = [
    "attention",
    "device",
    "masking",
    "dot_product_scores",
    "softmax",
    "scaled_dot_product_attention",
    "get_device",
    "set_seed",
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "to_additive",
]
