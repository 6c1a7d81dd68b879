"""Pictures of attention: static plots, schematic diagrams and interactive explorers.

- :mod:`.plots`: ``plot_attention`` (one attention matrix) and ``plot_head_grid`` (every layer
  and head of a model in one picture), drawn with matplotlib; no JavaScript, no network.
- :mod:`.diagrams`: schematic diagrams (query/key/value lookup, heads, mask patterns,
  encoder-decoder, FlashAttention tiles), matplotlib figures built from course_lib's own functions.
- :mod:`.explorers`: ``softmax_explorer``, ``attention_explorer``, ``positional_explorer``: sliders
  built on ipywidgets, with a static figure when no widget frontend is present. They import
  :mod:`.plots`, never the reverse, and are loaded on first use, so importing course_lib does
  not import ipywidgets.
- :mod:`.sampling`: chapter 11's ``sampling_explorer`` (temperature, top-p) and ``LiveLossPlot``.

Taught in: notebooks/01_dot_products.ipynb onwards.
"""

from __future__ import annotations

from .diagrams import (
    encoder_decoder_diagram,
    heads_diagram,
    mask_patterns_diagram,
    qkv_lookup_diagram,
    tiling_diagram,
)
from .plots import plot_attention, plot_head_grid

__all__ = ["plot_attention", "plot_head_grid", "softmax_explorer", "attention_explorer", "positional_explorer",
           "qkv_lookup_diagram", "heads_diagram", "mask_patterns_diagram", "encoder_decoder_diagram", "tiling_diagram",
           "sampling_explorer", "LiveLossPlot"]

_EXPLORERS = ("softmax_explorer", "attention_explorer", "positional_explorer")
_SAMPLING = ("sampling_explorer", "LiveLossPlot")


def __getattr__(name: str):
    """``course_lib.viz.softmax_explorer`` etc.: the explorers, imported on first use."""
    if name in _EXPLORERS:
        from . import explorers

        return getattr(explorers, name)
    if name in _SAMPLING:
        from . import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
