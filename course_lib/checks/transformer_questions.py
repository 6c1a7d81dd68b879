"""The predict-then-run question of chapter 08, a tiny transformer (its function exercises, and its
investigation ``find_alignment_head``, are in :mod:`~course_lib.checks.transformer`).

Taught in: solutions/ and exercises/ 08_tiny_transformer.
"""

from __future__ import annotations

import math
from typing import Callable

from ..data.tasks import DATE_TARGET_VOCAB
from .core import CheckReport
from .questions import number_compare, prediction

__all__ = ["check_predict_untrained_loss"]

#: How far a prediction may be from ln V (nats): an untrained model's loss lies near it.
_TOLERANCE = 0.25


def check_predict_untrained_loss(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_untrained_loss()``: the teacher-forcing loss of an untrained encoder-decoder on the
    date task, whose target vocabulary has V = 13 tokens, in nats per token, predicted.

    Passes within 0.25 of ln V = ln 13 = 2.56; names the common wrong predictions; explains the answer.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    V = len(DATE_TARGET_VOCAB)
    answer = math.log(V)
    return prediction(
        "predict_untrained_loss", answer, f"the loss of an untrained model over V = {V} target tokens, in nats",
        [("vocabulary_size", f"You predicted the number of tokens, {V}. The loss is the *log* of the number of "
          f"equally likely choices: -ln(1/{V}).", float(V)),
         ("probability_not_loss", f"You predicted the probability of the right token, 1/{V}. The loss is its "
          f"negative log: -ln(1/{V}).", 1.0 / V),
         ("bits_not_nats", f"You predicted log2({V}) = {math.log2(V):.2f}: that is in bits. cross_entropy uses the "
          f"natural log (nats): ln({V}).", math.log2(V)),
         ("zero_loss", "A loss of 0 means certainty: probability 1 on the right token. An untrained model knows "
          "nothing yet, so it is about as unsure as it can be.", 0.0)],
        fn, device,
        why=f"an untrained model's logits are small and unrelated to the answer, so its softmax spreads the "
            f"probability about evenly over the V = {V} target tokens: p = 1/{V} for the right one, and the loss "
            f"-ln p = ln {V} = {answer:.2f} nats. Training brings it close to 0.",
        compare=number_compare(answer, tolerance=_TOLERANCE, unit="nats"))
