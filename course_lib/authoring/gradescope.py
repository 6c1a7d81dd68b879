"""Build the Gradescope autograder zip: the course, ``setup.sh`` and ``run_autograder``.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once to build the image,
then ``run_autograder`` for each submission (the upload is in ``/autograder/submission``, the
verdict goes to ``/autograder/results/results.json``). ``setup.sh`` installs the course's pinned
environment: PyTorch at the Makefile's ``TORCH`` pin first, then the course package (editable, so
that the grader finds ``solutions/`` next to it). ``run_autograder`` calls ``course-grade
/autograder/submission --format gradescope --out /autograder/results``.

Usage::

    python -m course_lib.authoring.gradescope --torch "torch==2.13.0" --out build/gradescope/autograder.zip
    make gradescope
"""

from __future__ import annotations

import argparse
import re
import stat
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = "/autograder/venv"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, to build the autograder image.
set -euo pipefail
cd /autograder/source
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv {venv}
{venv}/bin/python -m pip install --upgrade pip
# PyTorch first, at the course's pin (CPU wheels: Gradescope's graders have no GPU).
{venv}/bin/python -m pip install --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple "{torch}"
{venv}/bin/python -m pip install -e /autograder/source
{venv}/bin/course-grade --help > /dev/null
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission; the verdict is /autograder/results/results.json.
set -uo pipefail
export PATH="{venv}/bin:$PATH"
cd /autograder/source
mkdir -p /autograder/results
course-grade /autograder/submission --format gradescope --out /autograder/results --no-progress
"""


def torch_pin(makefile: Path = ROOT / "Makefile") -> str:
    """The ``TORCH ?= ...`` requirement of the Makefile (the one place the course pins PyTorch).

    Raises:
        ValueError: if the Makefile has no ``TORCH ?=`` line.
    """
    match = re.search(r"^TORCH\s*\?=\s*(\S+)", makefile.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise ValueError(f"no 'TORCH ?= ...' line in {makefile}")
    return match.group(1)


def course_files(root: Path = ROOT) -> list[Path]:
    """What the autograder needs of the course: the package, the solutions, pyproject.toml, README.md."""
    files = [root / "pyproject.toml", root / "README.md"]
    for folder, pattern in (("course_lib", "*"), ("solutions", "*.ipynb")):
        files += [p for p in (root / folder).rglob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # fixed: the same course gives the same zip
    mode = 0o755 if executable else 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build(out: Path, torch: str | None = None, root: Path = ROOT) -> Path:
    """Write the autograder zip to ``out``.

    Args:
        out: the zip to write (its folder is created).
        torch: the PyTorch requirement to install (default: the Makefile's ``TORCH`` pin).
        root: the course folder.
    Returns:
        ``out``.
    """
    torch = torch or torch_pin(root / "Makefile")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        _add(archive, "setup.sh", SETUP_SH.format(venv=VENV, torch=torch).encode(), True)
        _add(archive, "run_autograder", RUN_AUTOGRADER.format(venv=VENV).encode(), True)
        for path in course_files(root):
            _add(archive, path.relative_to(root).as_posix(), path.read_bytes(), False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Gradescope autograder zip.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gradescope" / "autograder.zip")
    parser.add_argument("--torch", default=None, help="PyTorch requirement (default: the Makefile's TORCH pin)")
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out, args.torch)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
