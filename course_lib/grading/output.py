"""The output folder: refuse to mix two runs, and replace a previous run's files as one unit.

A folder that holds files (grades.csv, feedback/ of an earlier batch) is refused unless the
instructor passes ``--force``: a stale feedback file of a student who is not in this batch would
otherwise stay next to the new grades. With ``--force`` the new files are written into a fresh
hidden sibling folder (``.<name>.new-XXXX``, same filesystem), then the old folder is renamed
aside, the new one renamed into its place and the old one removed: a reader sees the old files or
the new ones, never a mix, and a run that fails before the swap leaves the old folder as it was.
A folder that holds no file (it does not exist, is empty, or holds only empty folders) is
written in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable


class OutputNotEmpty(FileExistsError):
    """The output folder holds files of another run and ``--force`` was not given."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"the output folder {folder} already holds files (an earlier run?); pass --force to "
                         "replace its contents, or choose another --out")
        self.folder = folder


def holds_files(folder: Path) -> bool:
    """Whether ``folder`` exists and holds anything but (nested) empty folders; a link counts as a file."""
    if not folder.is_dir():
        return False
    for _root, dirs, files in os.walk(folder):
        if files or any(os.path.islink(os.path.join(_root, d)) for d in dirs):
            return True
    return False


def check_output(folder: Path, force: bool) -> None:
    """Raise :class:`OutputNotEmpty` when ``folder`` holds files and ``force`` is False."""
    if not force and holds_files(folder):
        raise OutputNotEmpty(folder)


def write_output(folder: Path, write: Callable[[Path], None]) -> None:
    """Fill ``folder`` with ``write(target)``: in place when it holds no file, else into a sibling, then swap.

    Raises:
        whatever ``write`` raises; ``folder`` is then unchanged (when it held files) and the sibling removed.
    """
    if not holds_files(folder):
        folder.mkdir(parents=True, exist_ok=True)
        write(folder)
        return
    parent = folder.parent
    new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=parent))
    try:
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(new, 0o777 & ~mask)  # mkdtemp makes 0700; the folder gets the usual permissions
        write(new)
        old = parent / f".{folder.name}.old-{uuid.uuid4().hex[:12]}"  # a fresh name for the old folder
        os.rename(folder, old)
        try:
            os.rename(new, folder)
        except OSError:
            os.rename(old, folder)  # put the old run back
            raise
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
