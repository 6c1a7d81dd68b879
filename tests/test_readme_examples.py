"""The README's code examples run: each block after a ``<!-- check-example`` marker is executed as it stands."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from course_lib.checks import core

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"no ```python block after <!-- {marker} --> in README.md"
    return match[1]


def test_the_readme_check_example_runs_and_behaves_like_a_course_check(capsys):
    code = _block("check-example")
    assert 15 <= len(code.splitlines()) <= 25  # short, as the README promises
    namespace: dict = {}
    exec(compile(code, "README.md:check-example", "exec"), namespace)  # its own asserts run here
    check = namespace["check_average"]
    out = capsys.readouterr().out
    assert "all properties passed" in out and "Diagnosis:" in out  # what the learner reads
    right = check(lambda x: torch.mean(x, dim=0))
    assert right.status == "passed" and right.total >= 3  # two properties + the non-contiguous one
    wrong = check(lambda x: x.sum(dim=0))
    assert wrong.status == "failed" and wrong.diagnoses == ["summed"]

    def stub(x):
        raise NotImplementedError("Exercise: write your code here")

    assert check(stub).status == "not implemented"
    with core.capture() as captured:  # what the batch grader sees: the exercise, by the function's name
        check(stub, seed=7)
    assert [c.exercise.name for c in captured] == ["average"]
