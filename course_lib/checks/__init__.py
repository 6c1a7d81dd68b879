"""Immediate, diagnostic feedback for the exercises, one ``check_<exercise>`` per exercise.

Each check calls the learner's function on seeded random inputs (several shapes and dtypes),
compares the result with course_lib's reference, and prints a verdict per property: what
passed, what failed on the smallest failing input, and — when the wrong answer matches a
mistake the course knows — what the mistake is, in plain words. It never shows the reference
code. An exercise that still raises ``NotImplementedError`` prints "not implemented yet" and
does not raise, so an unfilled exercise notebook runs top to bottom.

Usage in a notebook::

    from course_lib.checks import check_softmax
    check_softmax(softmax);

How a diagnosis works: every exercise lists the common mistakes as small wrong variants of the
reference (scale forgotten, softmax over the wrong axis, mask inverted, ...). When the learner's
output differs from the reference but equals a mistake's output on the same input, the check
names that mistake. A mistake is only named when its output differs from the right answer on
that input, so a correct function is never "diagnosed".

Devices: ``check_<exercise>(fn, device=None)`` runs ``fn`` on ``device`` (default: the notebook's,
``course_lib.get_device()``, so ``COURSE_DEVICE`` is honoured); the inputs are moved there, the
outputs must be there, and they are judged on the CPU. ``device="meta"`` checks shapes and dtypes
only (status "shapes only"): a quick way to see that a function never reads values on the host.

Taught in: every solutions/ and exercises/ notebook.
"""

from . import (basics, basics_questions, cross_attention, efficient, gpt, masking, multihead, positional, pretrained,
               transformer, transformer_questions)
from .basics import *  # noqa: F401,F403  chapters 01-03
from .basics_questions import *  # noqa: F401,F403  chapters 01-03: predictions and investigations
from .core import NOT_IMPLEMENTED, Case, CheckReport, Exercise, Mistake, Property, run_check
from .cross_attention import *  # noqa: F401,F403  chapter 06
from .masking import *  # noqa: F401,F403  chapter 04
from .multihead import *  # noqa: F401,F403  chapter 05
from .positional import *  # noqa: F401,F403  chapter 07
from .transformer import *  # noqa: F401,F403  chapter 08
from .transformer_questions import *  # noqa: F401,F403  chapter 08: a prediction
from .efficient import *  # noqa: F401,F403  chapter 09
from .pretrained import *  # noqa: F401,F403  chapter 10
from .gpt import *  # noqa: F401,F403  chapter 11

#: Every check function, by chapter module (the batch grader discovers exercises here).
CHAPTER_MODULES = (basics, basics_questions, masking, multihead, cross_attention, positional, transformer,
                   transformer_questions, efficient, pretrained, gpt)

__all__ = ["CheckReport", "Case", "Exercise", "Mistake", "Property", "run_check", "NOT_IMPLEMENTED", "CHAPTER_MODULES"]
for _module in CHAPTER_MODULES:
    __all__ += list(_module.__all__)
