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

from course_lib.checks import core

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
