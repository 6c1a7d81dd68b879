"""Build reveal.js slide decks of the committed lessons, offline: ``make slides``.

``python -m course_lib.authoring.slides`` converts every ``notebooks/NN_topic.ipynb`` with nbconvert's
``SlidesExporter``, as it is committed (nothing is executed), into ``build/slides/``:

- ``NN_topic.slides.html``: one deck per lesson; ``index.html`` lists them;
- ``reveal.js/``: reveal.js itself (the script, its CSS, the "white" theme with its fonts and the
  speaker-notes plugin), taken at build time from the npm package ``reveal.js@REVEAL_VERSION``;
- ``_static/mathjax/``: the local MathJax 2 the course site uses (``jupyter-server-mathjax``).

reveal.js comes from the npm registry, not from a CDN: ``npm pack`` downloads the pinned version once
into ``build/cache/``, its sha512 is checked against ``REVEAL_INTEGRITY``, and later builds reuse it
(npm is needed only for that first download). Only the files listed in ``REVEAL_FILES`` are copied:
the other themes and plugins of the package load web fonts or scripts from CDNs. nbconvert's reveal
template is used with everything that loads from the network replaced: no require.js, jQuery,
mermaid.js or widget renderer; reveal.js and MathJax are the local copies. Widget outputs keep
their static PNG, and the setup cell is left out (as on the site). Open a deck from the disk.

Where the slides break. Each cell gets a ``slideshow.slide_type`` at build time, in memory (the
committed notebooks are never rewritten); the first rule that applies wins:

1. the setup cell (tagged ``setup``) -> ``skip``: a reader of the slides has nothing to install;
2. a cell whose own metadata has ``slideshow.slide_type`` keeps it: an author's override
   (set it in JupyterLab's property inspector, "Slide Type");
3. a cell tagged ``slides-skip`` -> ``skip``;
4. a markdown cell whose first line starts with ``# `` or ``## `` -> ``slide`` (a new slide, left
   to right), ``### `` -> ``subslide`` (a new slide below, down the same column);
5. a markdown cell that opens with a bold lead (``**Memory.** ...``) or comes right after a figure
   (a code cell with an ``image/png`` output) -> ``subslide``: a long section is cut into steps;
6. a code cell without outputs -> ``skip`` (definitions and helpers: the decks show results);
7. any other cell -> ``-``: it continues the slide above it, so every figure and every cell
   tagged ``nbval-check-output`` is shown, under its section's heading.

A slide taller than the screen scrolls.

Usage::

    python -m course_lib.authoring.slides [--out build/slides]

Taught in: README.md ("For instructors": slides).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nbformat

from .build_exercises import ROOT
from .site import lesson_title, lessons, offline_mathjax, plain_title, rewrite_links, static_outputs

# reveal.js, pinned here and nowhere else: the npm package and the sha512 of its tarball (npm's
# "integrity", as `npm view reveal.js@5.2.1 dist.integrity` prints it).
REVEAL_VERSION = "5.2.1"
REVEAL_INTEGRITY = ("sha512-r7//6mIM5p34hFiDMvYfXgyjXqGRta+/psd9YtytsgRlrpRzFv4RbH76TXd2qD+7ZPZEbpBDhdRhJa"
                    "FgfQ7zNQ==")
# What the decks use of the package (paths inside it; a trailing "/" takes the folder).
REVEAL_FILES = ("LICENSE", "dist/reveal.js", "dist/reveal.css", "dist/theme/white.css",
                "dist/theme/fonts/source-sans-pro/", "plugin/notes/notes.js")
REVEAL_DIR = "reveal.js"
CACHE = ROOT / "build" / "cache"
MARKER = ".course-slides"  # written into the output folder: only such a folder is ever emptied
SKIP_TAG = "slides-skip"
WIDTH, HEIGHT = 1280, 800  # reveal.js scales this canvas to the screen

# nbconvert's reveal template minus everything that loads from the network.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_jquery -%}{%- endblock html_head_js_jquery -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
{{ resources.course_mathjax }}
{%- endblock html_head_js_mathjax -%}
{% block notebook_css %}
{{ super() }}
<style type="text/css">
/* A slide taller than the screen scrolls (reveal.js would cut it). */
.reveal .slides > section > section { height: 100%; overflow: auto; }
.reveal .slides section img { max-height: 560px; }
</style>
{% endblock notebook_css %}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true, center: false,
  transition: "{{ resources.reveal.transition }}", slideNumber: "c/t",
  width: {{ resources.reveal.width }}, height: {{ resources.reveal.height }},
  plugins: [RevealNotes]
});
// MathJax typesets hidden slides at the wrong size: typeset the shown one again.
Reveal.on("slidechanged", function () {
  if (window.MathJax && MathJax.Hub && MathJax.Hub.getAllJax(Reveal.getCurrentSlide()).length) {
    MathJax.Hub.Rerender(Reveal.getCurrentSlide());
  }
});
</script>
{% endblock footer_js %}
"""


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _has_figure(cell) -> bool:
    return cell is not None and any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def slide_type(cell, previous=None) -> str:
    """The ``slideshow.slide_type`` a lesson's cell gets in its deck (the rules of the module docstring).

    Args:
        cell: a notebook cell (``nbformat.NotebookNode`` or dict with ``cell_type``, ``source``,
            ``metadata`` and, for code, ``outputs``).
        previous: the cell before it in the notebook (None for the first).
    Returns:
        one of ``"slide"``, ``"subslide"``, ``"fragment"``, ``"-"``, ``"skip"``, ``"notes"``.
    Raises:
        TypeError: if ``cell`` is not a mapping with a ``cell_type``.
    """
    if not hasattr(cell, "get") or "cell_type" not in cell:
        raise TypeError(f"slide_type: cell must be a notebook cell (a mapping with 'cell_type'), got {type(cell).__name__}")
    tags = _tags(cell)
    if "setup" in tags:
        return "skip"
    own = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
    if own:
        return own
    if SKIP_TAG in tags:
        return "skip"
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    first = source.lstrip("\n").split("\n", 1)[0]
    if cell["cell_type"] == "markdown":
        if first.startswith(("# ", "## ")):
            return "slide"
        if first.startswith("### ") or first.startswith("**") or _has_figure(previous):
            return "subslide"
    if cell["cell_type"] == "code" and not cell.get("outputs"):
        return "skip"
    return "-"


def with_slide_types(nb):
    """A copy of ``nb`` whose cells all carry ``metadata.slideshow.slide_type`` (``nb`` is left as it is).

    Args:
        nb: a notebook (``nbformat.NotebookNode``, version 4).
    Returns:
        the copy, with the setup cell removed and widget views dropped (``site.static_outputs``).
    """
    nb = copy.deepcopy(nb)
    types = [slide_type(cell, nb.cells[i - 1] if i else None) for i, cell in enumerate(nb.cells)]
    for cell, kind in zip(nb.cells, types):
        cell.metadata["slideshow"] = nbformat.from_dict({**cell.metadata.get("slideshow", {}), "slide_type": kind})
    return static_outputs(nb)


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode("ascii")


def fetch_reveal(cache: Path | str = CACHE) -> Path:
    """The npm tarball of ``reveal.js@REVEAL_VERSION``: from ``cache``, or downloaded there with ``npm pack``.

    Args:
        cache: the folder that keeps the tarball between builds (``build/cache/``).
    Returns:
        the path of ``reveal.js-REVEAL_VERSION.tgz``, its sha512 checked against ``REVEAL_INTEGRITY``.
    Raises:
        SystemExit: if the tarball is not cached and npm is missing or fails, or if the tarball's
            sha512 is not the pinned one.
    """
    cache = Path(cache)
    tarball = cache / f"reveal.js-{REVEAL_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit(
                f"course_lib.authoring.slides: reveal.js {REVEAL_VERSION} is fetched from the npm registry with "
                f"npm, which is not installed. Install Node.js with npm (Debian/Ubuntu: apt-get install npm; "
                f"elsewhere: the Node.js installer), or put reveal.js-{REVEAL_VERSION}.tgz in {cache}.")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            done = subprocess.run([npm, "pack", f"reveal.js@{REVEAL_VERSION}", "--pack-destination", tmp,
                                   "--silent"], capture_output=True, text=True)
            packed = Path(tmp) / tarball.name
            if done.returncode != 0 or not packed.is_file():
                raise SystemExit(f"course_lib.authoring.slides: `npm pack reveal.js@{REVEAL_VERSION}` failed "
                                 f"(exit {done.returncode}): {done.stderr.strip()[-800:]}")
            packed.replace(tarball)  # atomic: a concurrent build sees the whole file or none
    found = _integrity(tarball)
    if found != REVEAL_INTEGRITY:
        raise SystemExit(f"course_lib.authoring.slides: {tarball} has sha512 {found}, not the pinned "
                         f"{REVEAL_INTEGRITY}; delete it and build again")
    return tarball


def copy_reveal(tarball: Path, dest: Path) -> list[Path]:
    """Extract the files of ``REVEAL_FILES`` from the npm tarball into ``dest`` (``dest/dist/...``).

    Returns:
        the written files.
    Raises:
        SystemExit: if the tarball lacks one of ``REVEAL_FILES``.
    """
    written = []
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/")
            if not member.isfile() or ".." in Path(name).parts:
                continue
            if any(name == want or (want.endswith("/") and name.startswith(want)) for want in REVEAL_FILES):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
                written.append(target)
    missing = [want for want in REVEAL_FILES if not (dest / want).exists()]
    if missing:
        raise SystemExit(f"course_lib.authoring.slides: {tarball} lacks {missing}")
    return written


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(extra_loaders=[DictLoader({"course_slides.html.j2": _TEMPLATE})])
    exporter.template_file = "course_slides.html.j2"
    exporter.reveal_url_prefix = REVEAL_DIR
    exporter.reveal_theme = "white"
    exporter.reveal_transition = "slide"
    exporter.reveal_width, exporter.reveal_height = str(WIDTH), str(HEIGHT)
    return exporter


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise SystemExit(f"course_lib.authoring.slides: {out} exists and is not a build of the slides; "
                             "refusing to empty it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("Built by python -m course_lib.authoring.slides; emptied on every build.\n")


def _index(decks: list[tuple[str, str]]) -> str:
    rows = "\n".join(f'<li><a href="{html.escape(page)}">{html.escape(title)}</a></li>' for page, title in decks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<title>Attention, from dot products to transformers: slides</title>
<style type="text/css">
body {{ font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; max-width: 52em;
  margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
a {{ color: #1a5fb4; text-decoration: none; }}
</style>
</head>
<body>
<h1>Attention, from dot products to transformers: slides</h1>
<p>One deck per lesson, from the committed notebooks. Arrow keys move between slides; <kbd>Esc</kbd> shows
the overview; <kbd>S</kbd> opens the speaker view. Nothing is loaded from the network.</p>
<ol class="decks">
{rows}
</ol>
</body>
</html>
"""


def build_slides(out: Path | str = ROOT / "build" / "slides", notebooks: Path | str = ROOT / "notebooks",
                 cache: Path | str = CACHE) -> list[Path]:
    """Convert the committed lessons to offline reveal.js decks (nothing is executed).

    Args:
        out: the output folder (emptied first if it holds a previous build; refused if it holds
            anything else).
        notebooks: the folder of lessons ``NN_topic.ipynb``.
        cache: where the reveal.js tarball is kept between builds.
    Returns:
        the paths of the written decks, in chapter order (``index.html`` is not among them).
    Raises:
        SystemExit: if ``out`` holds something that is not a previous build, or reveal.js cannot be
            fetched (npm missing: the message says what to install).
        ValueError: if there is no lesson.
    """
    out, notebooks = Path(out), Path(notebooks)
    found = lessons(notebooks)
    if not found:
        raise ValueError(f"course_lib.authoring.slides: no lesson NN_topic.ipynb in {notebooks}")
    tarball = fetch_reveal(cache)  # before emptying `out`: without npm, the last build stays
    _prepare_out(out)
    copy_reveal(tarball, out / REVEAL_DIR)
    mathjax = offline_mathjax(out)
    exporter = _exporter()
    written, decks = [], []
    decks_of = {path.name: f"{path.stem}.slides.html" for path in found}
    for path in found:
        nb = nbformat.read(path, as_version=4)
        title = lesson_title(nb)
        resources = {"metadata": {"name": plain_title(title)}, "course_mathjax": mathjax}
        body, _ = exporter.from_notebook_node(with_slide_types(nb), resources=resources)
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(rewrite_links(body, decks_of, set()), encoding="utf-8")  # "03_scaling.ipynb" -> its deck
        written.append(deck)
        decks.append((deck.name, title))
    (out / "index.html").write_text(_index(decks), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build offline reveal.js slide decks from notebooks/.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides", help="output folder")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="the lessons")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the reveal.js tarball is kept")
    args = parser.parse_args(argv)
    written = build_slides(args.out, args.notebooks, args.cache)
    print(f"wrote {len(written)} decks (reveal.js {REVEAL_VERSION}) to {args.out}; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
