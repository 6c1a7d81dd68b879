"""Build the offline course site: the committed lessons as HTML, with an index and links between them.

``make site`` (``python -m course_lib.authoring.site``) converts every ``notebooks/NN_topic.ipynb`` with
nbconvert, as it is committed (nothing is executed), into ``build/site/``:

- ``index.html``: the chapters in order, each with its lesson page and its exercise notebook;
- ``NN_topic.html``: one page per lesson, with "previous / contents / next" links at the top and
  the bottom; links between lessons point to their pages;
- ``exercises/NN_topic.ipynb``: copies of the exercise notebooks the lessons link to;
- ``_static/mathjax/``: a local MathJax 2 (from the ``jupyter-server-mathjax`` package) for the
  formulas.

Nothing in the site loads anything from the network: nbconvert's "lab" template is used with its
network-loading parts replaced (require.js, the widget renderer and mermaid.js from CDNs are left
out; MathJax is the local copy), and widget outputs keep only their static PNG. Open
``build/site/index.html`` in a browser, from the disk.

Usage::

    python -m course_lib.authoring.site [--out build/site]

Taught in: README.md ("The course as a web site").
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from pathlib import Path

import nbformat

from .build_exercises import ROOT

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MARKER = ".course-site"  # written into the output folder: only such a folder is ever emptied
MATHJAX_DIR = "_static/mathjax"
LESSON_NAME = re.compile(r"^(\d\d)_\w+\.ipynb$")

_NAV_CSS = """
nav.course-nav { display: flex; justify-content: space-between; gap: 1em; margin: 0.5em 0 1em 0;
  padding: 0.5em 0.8em; border: 1px solid #ddd; border-radius: 4px; background: #f7f7f7;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: 14px; }
nav.course-nav a { text-decoration: none; color: #1a5fb4; }
nav.course-nav span.none { color: #999; }
"""

_MATHJAX = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
            processEscapes: true, processEnvironments: true},
  "HTML-CSS": {availableFonts: [], imageFont: null, preferredFont: null, webFont: "STIX-Web"},
  MathMenu: {showFontMenu: false, showLocale: false},
  displayAlign: "center",
  messageStyle: "none",
  // The hidden MathML copy of each formula (for screen readers) would be styled with MathJax's TeX
  // fonts (e.g. MathJax_AMS for a double-struck E), which the local MathJax does not ship: the
  // browser would ask for a missing file. It is never shown, so a system font does.
  styles: {".MJX_Assistive_MathML, .MJX_Assistive_MathML *": {"font-family": "serif !important"}}
});
</script>
<script src="URL"></script>"""

# nbconvert's "lab" template minus everything that loads from the network.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ resources.course_mathjax }}
{%- endblock html_head_js_mathjax -%}
{% block extra_css %}<style type="text/css">{{ resources.course_nav_css }}</style>{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{{ resources.course_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.course_nav }}
{{ super() }}
{% endblock body_footer %}
"""


def lessons(notebooks: Path) -> list[Path]:
    """The lessons in chapter order: ``NN_topic.ipynb`` files sorted by their number."""
    found = [p for p in notebooks.glob("*.ipynb") if LESSON_NAME.match(p.name)]
    return sorted(found, key=lambda p: (int(p.name[:2]), p.name))


def lesson_title(nb) -> str:
    """The first heading of the first markdown cell ("02 — Softmax: ..."), without the '#'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "(untitled)"


def plain_title(title: str) -> str:
    """A title without LaTeX, for the browser's tab: ``$\\sqrt{d_k}$`` -> ``√d_k``."""
    title = re.sub(r"\\sqrt\{([^}]*)\}", "\u221a\\1", title)
    return title.replace("$", "").replace("\\", "")


def static_outputs(nb):
    """Drop what only a live widget frontend can show: widget views and the saved widget state.

    An explorer's output also carries ``image/png`` (its starting state), which is what remains.
    The setup cell (tagged ``setup``: it installs the course where it is missing) is dropped too:
    a reader of the site has nothing to install.
    """
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if "setup" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
    return nb


def _nav(prev: tuple[str, str] | None, nxt: tuple[str, str] | None) -> str:
    def link(target, arrow_first):
        if target is None:
            return '<span class="none"></span>'
        href, title = target
        text = f"← {html.escape(title)}" if arrow_first else f"{html.escape(title)} →"
        return f'<a href="{html.escape(href)}">{text}</a>'

    return (f'<nav class="course-nav">{link(prev, True)}<a href="index.html">Contents</a>'
            f"{link(nxt, False)}</nav>")


def rewrite_links(page: str, pages: dict[str, str], exercises: set[str]) -> str:
    """Lesson links -> their pages; ../exercises/X.ipynb -> the copy in exercises/."""

    def replace(match):
        quote, target, fragment = match.group(1), match.group(2), match.group(3) or ""
        name = target.rsplit("/", 1)[-1]
        if target in pages:
            return f"href={quote}{pages[target]}{fragment}{quote}"
        if target.startswith("../exercises/") and name in exercises:
            return f"href={quote}exercises/{name}{fragment}{quote}"
        return match.group(0)

    return re.sub(r"href=([\"'])([^\"'#]+\.ipynb)(#[^\"']*)?\1", replace, page)


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"course_site.html.j2": _TEMPLATE})])
    exporter.template_file = "course_site.html.j2"
    return exporter


def offline_mathjax(out: Path) -> str:
    """Copy MathJax into ``out`` (see :func:`_copy_mathjax`); return the script tags that load it, or "".

    The site and the slide decks both load this local copy, never a CDN.
    """
    if not _copy_mathjax(out):
        return ""
    return _MATHJAX.replace("URL", f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe")


def _copy_mathjax(out: Path) -> bool:
    try:
        import jupyter_server_mathjax
    except ImportError:
        print("course_lib.authoring.site: jupyter-server-mathjax is not installed; formulas stay as LaTeX source "
              "(pip install jupyter-server-mathjax)", file=sys.stderr)
        return False
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    # a11y (the speech engine) would fetch its rule files from a CDN: not copied.
    shutil.copytree(source, out / MATHJAX_DIR, ignore=shutil.ignore_patterns("a11y", "*.md"))
    return True


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise SystemExit(f"course_lib.authoring.site: {out} exists and is not a course site; refusing to empty it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("Built by python -m course_lib.authoring.site; emptied on every build.\n")


def _index(chapters: list[dict], mathjax: str) -> str:
    rows = []
    for c in chapters:
        exercise = (f' · <a href="exercises/{html.escape(c["exercise"])}">exercise notebook</a>'
                    if c["exercise"] else "")
        rows.append(f'<li><a href="{html.escape(c["page"])}">{html.escape(c["title"])}</a>{exercise}</li>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Attention, from dot products to transformers</title>
<style type="text/css">
body {{ font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; max-width: 52em;
  margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
ol li {{ margin: 0.4em 0; }}
a {{ color: #1a5fb4; text-decoration: none; }}
.note {{ color: #555; font-size: 0.95em; }}
</style>
{mathjax}
</head>
<body>
<h1>Attention, from dot products to transformers</h1>
<p>The course's lessons, in order, as they are committed (with their outputs). Each lesson links to the
previous and the next one. To run the code, move the sliders of the interactive explorers and do the
exercises, open the notebooks in JupyterLab (<code>make lab</code>).</p>
<ol class="chapters">
{chr(10).join(rows)}
</ol>
<p class="note">This site loads nothing from the network: open it from the disk.</p>
</body>
</html>
"""


def build_site(out: Path | str = ROOT / "build" / "site", notebooks: Path | str = ROOT / "notebooks",
               exercises: Path | str = ROOT / "exercises") -> list[Path]:
    """Convert the committed lessons to an offline HTML site (nothing is executed).

    Args:
        out: the output folder (emptied first if it holds a previous build; refused if it holds
            anything else).
        notebooks: the folder of lessons ``NN_topic.ipynb``.
        exercises: the folder of exercise notebooks the lessons link to (copied into the site).
    Returns:
        the paths of the written HTML pages, the index first.
    Raises:
        SystemExit: if ``out`` holds something that is not a previous build.
        ValueError: if there is no lesson.
    """
    out, notebooks, exercises = Path(out), Path(notebooks), Path(exercises)
    found = lessons(notebooks)
    if not found:
        raise ValueError(f"course_lib.authoring.site: no lesson NN_topic.ipynb in {notebooks}")
    _prepare_out(out)
    mathjax = offline_mathjax(out)
    exercise_names = {p.name for p in exercises.glob("*.ipynb")} if exercises.is_dir() else set()
    if exercise_names:
        (out / "exercises").mkdir()
        for name in sorted(exercise_names):
            shutil.copy2(exercises / name, out / "exercises" / name)

    books = [nbformat.read(path, as_version=4) for path in found]
    chapters = [{"source": p.name, "page": p.with_suffix(".html").name, "title": lesson_title(nb),
                 "exercise": p.name if p.name in exercise_names else None} for p, nb in zip(found, books)]
    pages = {c["source"]: c["page"] for c in chapters}
    exporter = _exporter()
    written = [out / "index.html"]
    (out / "index.html").write_text(_index(chapters, mathjax), encoding="utf-8")
    for i, (chapter, nb) in enumerate(zip(chapters, books)):
        prev = (chapters[i - 1]["page"], chapters[i - 1]["title"]) if i > 0 else None
        nxt = (chapters[i + 1]["page"], chapters[i + 1]["title"]) if i + 1 < len(chapters) else None
        resources = {"metadata": {"name": plain_title(chapter["title"])}, "course_nav": _nav(prev, nxt),
                     "course_nav_css": _NAV_CSS, "course_mathjax": mathjax}
        body, _ = exporter.from_notebook_node(static_outputs(nb), resources=resources)
        page = out / chapter["page"]
        page.write_text(rewrite_links(body, pages, exercise_names), encoding="utf-8")
        written.append(page)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the offline course site (HTML) from notebooks/.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="output folder")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="the lessons")
    parser.add_argument("--exercises", type=Path, default=ROOT / "exercises", help="the exercise notebooks")
    args = parser.parse_args(argv)
    written = build_site(args.out, args.notebooks, args.exercises)
    print(f"wrote {len(written)} pages to {args.out}; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
