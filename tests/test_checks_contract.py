"""The contract every chapter's checks keep, tested once over all chapters.

Each tests/test_checks_*.py module declares ``GOOD`` (check, a right answer written differently
from the reference) and ``BUGGY`` (check, a realistic wrong answer, the diagnosis it must get).
For every check: a right answer passes with no diagnosis; the unfilled stub says "not implemented
yet" and does not raise; each wrong answer gets exactly its own diagnosis, and every mistake a
check declares is triggered by at least one wrong answer (an untested diagnosis is a silent one).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from course_lib import checks
from course_lib.checks import core
from course_lib.checks.base import NON_CONTIGUOUS

CHAPTER_MODULES = sorted(p.stem for p in Path(__file__).parent.glob("test_checks_*.py")
                         if p.stem != "test_checks_contract") + ["test_checks"]


def _collect():
    good, buggy = [], []
    for name in CHAPTER_MODULES:
        module = importlib.import_module(name)
        good += [(name, check, fn) for check, fn in module.GOOD]
        buggy += [(name, check, fn, key) for check, fn, key in module.BUGGY]
    return good, buggy


GOOD, BUGGY = _collect()


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def _declared_mistakes(check) -> set[str]:
    with core.capture() as records:
        check(not_implemented)
    assert len(records) == 1
    return {m.key for m in records[0].exercise.mistakes}


def test_every_chapter_declares_its_answers():
    assert len(CHAPTER_MODULES) >= 8 and len({c for _, c, _ in GOOD}) >= 27  # chapters 01-03 share test_checks.py
    assert len(BUGGY) >= 60


@pytest.mark.parametrize("module, check, fn", GOOD, ids=[f"{m}-{c.__name__}-{i}" for i, (m, c, _) in enumerate(GOOD)])
def test_right_answers_pass(module, check, fn, capsys):
    report = check(fn)
    least = 1 if check.__name__.startswith("check_predict") else 3  # a prediction is one property; a function, 3+
    assert report.status == "passed" and report.score == 1.0 and report.total >= least, report.results
    assert report.diagnoses == []
    assert "all properties passed" in capsys.readouterr().out


UNIQUE_CHECKS = sorted({c for _, c, _ in GOOD}, key=lambda c: c.__name__)


@pytest.mark.parametrize("check", UNIQUE_CHECKS, ids=[c.__name__ for c in UNIQUE_CHECKS])
def test_unfilled_exercise_says_not_implemented_and_does_not_raise(check, capsys):
    report = check(not_implemented)
    assert report.status == "not implemented" and report.score == 0.0
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:The use of `x.T`")
@pytest.mark.parametrize("module, check, fn, key", BUGGY,
                         ids=[f"{m}-{c.__name__}-{k}-{i}" for i, (m, c, _, k) in enumerate(BUGGY)])
def test_each_mistake_gets_its_own_diagnosis(module, check, fn, key, capsys):
    report = check(fn)
    out = capsys.readouterr().out
    assert report.status == "failed" and report.score < 1.0
    assert report.diagnoses == [key], f"expected only {key}, got {report.diagnoses}"
    assert "Diagnosis:" in out and "FAIL" in out


@pytest.mark.parametrize("check", UNIQUE_CHECKS, ids=[c.__name__ for c in UNIQUE_CHECKS])
def test_every_declared_mistake_is_triggered_by_a_wrong_answer(check):
    triggered = {key for _, c, _, key in BUGGY if c is check}
    untested = _declared_mistakes(check) - triggered
    assert not untested, f"{check.__name__} declares mistakes no wrong answer in tests/ triggers: {sorted(untested)}"


def _captured_exercise(check):
    with core.capture() as captured:
        check(not_implemented)
    return captured[0].exercise


@pytest.mark.parametrize("check", UNIQUE_CHECKS, ids=[c.__name__ for c in UNIQUE_CHECKS])
def test_matrix_inputs_also_come_as_non_contiguous_views(check):
    """Every check whose cases hold a matrix input repeats one case with the same values in another memory layout."""
    exercise = _captured_exercise(check)
    matrices = [a for p in exercise.properties for c in p.cases for a in (*c.args, *c.kwargs.values())
                if isinstance(a, torch.Tensor) and a.dim() >= 2 and sum(n > 1 for n in a.shape) >= 2]
    extra = [p for p in exercise.properties if p.title == NON_CONTIGUOUS]
    if not matrices:
        assert extra == []
        return
    assert len(extra) == 1 and len(extra[0].cases) == 1
    case = extra[0].cases[0]
    tensors = [a for a in (*case.args, *case.kwargs.values()) if isinstance(a, torch.Tensor)]
    strided = [a for a in tensors if not a.is_contiguous()]
    assert strided, "no input of the non-contiguous case is non-contiguous"
    # the same values as one of the other cases: a layout change, not new inputs
    originals = [c for p in exercise.properties if p.title != NON_CONTIGUOUS for c in p.cases]
    assert any(len(c.args) == len(case.args) and all(
        (torch.equal(a, b) and a.dtype == b.dtype) if isinstance(a, torch.Tensor) else a is b or a == b
        for a, b in zip(c.args, case.args)) for c in originals)


def test_a_view_that_merges_dims_fails_only_on_non_contiguous_inputs_and_is_diagnosed(capsys):
    """Flattening the batch with .view works on every contiguous case and raises on a permuted layout."""
    def scores_with_view(query, key):
        L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
        q = query.view(-1, L, E)  # (N, L, E): raises when query is not contiguous
        k = key.view(-1, S, E)  # (N, S, E)
        return torch.bmm(q, k.transpose(1, 2)).view(*query.shape[:-2], L, S)  # (..., L, S)

    report = checks.check_dot_product_scores(scores_with_view)
    failed = [r.title for r in report.results if not r.passed]
    assert failed == [NON_CONTIGUOUS]
    assert report.diagnoses == ["view_after_transpose"]
    assert ".reshape(" in capsys.readouterr().out
