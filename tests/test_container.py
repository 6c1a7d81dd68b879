"""The container recipe for grading without Landlock parses, runs as a non-root user, and keeps the course read-only.

No container engine runs in CI, so the file is checked as text: every instruction is a Dockerfile
instruction, its JSON forms parse, what it copies exists here, and the grader it starts refuses
nothing it needs (``--solutions`` points inside the image).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from course_lib.authoring.build_exercises import ROOT

DOCKERFILE = ROOT / "container" / "Dockerfile"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    assert not current, "a continuation line never ends"
    return [(text.split(None, 1)[0], text.split(None, 1)[1] if " " in text else "") for text in joined]


def test_the_dockerfile_parses():
    steps = _instructions()
    assert steps[0][0] == "FROM"
    for keyword, args in steps:
        assert keyword in INSTRUCTIONS, f"not a Dockerfile instruction: {keyword}"
        assert keyword == keyword.upper() and args, keyword
        if args.startswith("["):
            assert all(isinstance(a, str) for a in json.loads(args))  # exec form is a JSON list of strings


def test_the_container_runs_the_grader_as_an_unprivileged_user_on_a_read_only_course():
    steps = _instructions()
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    run = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "chmod -R a-w /course" in run  # the package and solutions cannot be rewritten
    entry = json.loads(next(args for keyword, args in steps if keyword == "ENTRYPOINT"))
    assert entry[:3] == ["course-grade", "--solutions", "/course/solutions"]
    for keyword, args in steps:
        if keyword == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    assert re.search(r"sed -n 's/\^TORCH", run)  # torch comes from the Makefile's pin, like everywhere else


def test_auto_isolation_refuses_to_start_without_landlock(tmp_path):
    """A simulated kernel without Landlock: course-grade exits 2 and says what to do, grading nothing."""
    notebook = ROOT / "solutions" / "01_dot_products.ipynb"
    env = {"PATH": "/usr/bin:/bin", "COURSE_LANDLOCK_ABI": "0", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", str(notebook), "--out", str(tmp_path / "out"),
                             "--no-progress"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "--isolation none" in result.stderr and "container" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing was graded or written
