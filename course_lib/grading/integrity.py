"""The integrity of the grader's own code: a sha256 of the ``course_lib`` folder before and after a batch.

The checks, the references and the grader all live in ``course_lib``; a submission that managed
to change a file there (despite the sandbox) could change every later verdict. The grader hashes
the folder before the batch and after it, and a difference fails the run loudly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the course_lib folder


@dataclass(frozen=True)
class Snapshot:
    """One look at a folder: the sha256 of every file (by relative path) and of the whole."""

    files: dict[str, str]
    digest: str


def snapshot(folder: Path = PACKAGE) -> Snapshot:
    """Hash every file under ``folder`` (sorted; ``__pycache__`` skipped; links hashed as their target text).

    Args:
        folder: the folder to hash (default: the ``course_lib`` package).
    Returns:
        a :class:`Snapshot`: per-file sha256 and the sha256 of all names and contents in order.
    """
    files: dict[str, str] = {}
    whole = hashlib.sha256()
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        rel = path.relative_to(folder)
        if "__pycache__" in rel.parts or path.is_dir() and not path.is_symlink():
            continue
        data = path.readlink().as_posix().encode() if path.is_symlink() else path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        files[rel.as_posix()] = digest
        whole.update(rel.as_posix().encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n")
    return Snapshot(files, whole.hexdigest())


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """The files added, removed or modified between two snapshots, each marked, sorted by name."""
    names = sorted(set(before.files) | set(after.files))
    out = []
    for name in names:
        if name not in after.files:
            out.append(f"{name} (removed)")
        elif name not in before.files:
            out.append(f"{name} (added)")
        elif before.files[name] != after.files[name]:
            out.append(f"{name} (modified)")
    return out


class PackageChanged(RuntimeError):
    """The hashed folder changed during the batch; ``rows`` holds the rows that were written anyway."""

    def __init__(self, folder: Path, changed: list[str], rows: list):
        self.folder, self.changed, self.rows = folder, changed, rows
        shown = ", ".join(changed[:20]) + (f" and {len(changed) - 20} more" if len(changed) > 20 else "")
        super().__init__(f"the grader's package {folder} changed during grading: {shown}; "
                         "do not trust this batch's grades (look for how a submission wrote there)")
