"""course_lib.authoring.site: the offline HTML site of the committed lessons (make site).

Builds the site once from the committed notebooks and checks the index, the links between chapters,
that nothing was executed (outputs are the committed ones), and that no file loads anything from the
network: no remote URL in any src/href (navigation links <a href> excepted), in CSS url()/@import,
or in scripts, apart from a short list of hosts that appear only as XML namespaces and licence text.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from course_lib.authoring.build_exercises import ROOT
from course_lib.authoring.site import WIDGET_VIEW, build_site, lesson_title, lessons
from offline_check import Page, remote_references


@pytest.fixture(scope="module")
def site(built_site) -> Path:
    return built_site  # built once per run, shared with test_browser.py (conftest.py)


def _lesson_paths() -> list[Path]:
    return lessons(ROOT / "notebooks")


def _hrefs(page: Path) -> list[str]:
    parser = Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return [value for tag, name, value in parser.references if name in ("href", "src")]


def test_index_lists_every_lesson_in_chapter_order(site):
    paths = _lesson_paths()
    numbers = [int(p.name[:2]) for p in paths]
    assert numbers == sorted(numbers) and len(paths) >= 7
    index = (site / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'<li><a href="(\d\d_\w+\.html)">([^<]*)</a>', index)
    assert [href for href, _ in links] == [p.with_suffix(".html").name for p in paths]
    for (_, title), path in zip(links, paths):
        assert html.unescape(title) == lesson_title(nbformat.read(path, as_version=4))
    for path in paths:
        exercise = ROOT / "exercises" / path.name
        if exercise.exists():
            assert f'href="exercises/{path.name}"' in index
            assert (site / "exercises" / path.name).read_bytes() == exercise.read_bytes()


def test_each_chapter_links_to_the_previous_the_contents_and_the_next(site):
    pages = [p.with_suffix(".html").name for p in _lesson_paths()]
    for i, name in enumerate(pages):
        page = (site / name).read_text(encoding="utf-8")
        navs = re.findall(r'<nav class="course-nav">(.*?)</nav>', page, flags=re.DOTALL)
        assert len(navs) == 2 and navs[0] == navs[1]  # top and bottom
        targets = re.findall(r'href="([^"]+)"', navs[0])
        expected = ([pages[i - 1]] if i > 0 else []) + ["index.html"] + ([pages[i + 1]] if i + 1 < len(pages) else [])
        assert targets == expected, name


def test_every_local_link_resolves_and_lesson_links_point_to_pages(site):
    for page in sorted(site.glob("*.html")):
        for href in _hrefs(page):
            url = urlparse(href)
            if url.scheme in ("data", "mailto") or href.startswith("#") or (url.scheme and url.netloc):
                continue
            target = site / unquote(url.path)
            assert target.exists(), f"{page.name}: broken link {href}"
            assert not href.endswith(".ipynb") or href.startswith("exercises/"), f"{page.name}: {href}"
        assert "../exercises/" not in page.read_text(encoding="utf-8")


def test_no_file_of_the_site_loads_anything_from_the_network(site):
    files = [p for p in site.rglob("*") if p.is_file()]
    assert any(p.suffix == ".js" for p in files)  # the local MathJax is part of the check
    problems = [problem for path in files for problem in remote_references(path)]
    assert problems == []
    for page in site.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "require.js" not in text and "mermaid" not in text.lower() and "html-manager" not in text
        assert 'src="_static/mathjax/MathJax.js?config=' in text  # formulas typeset by the local copy
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()
    assert not (site / "_static" / "mathjax" / "extensions" / "a11y").exists()  # it would fetch from a CDN


@pytest.mark.parametrize("snippet, flagged", [
    ('<script src="https://cdn.example.org/x.js"></script>', True),
    ('<link rel="stylesheet" href="//cdn.example.org/x.css">', True),
    ('<img src="http://example.org/x.png">', True),
    ('<style>body { background: url("https://example.org/bg.png") }</style>', True),
    ("<style>@import 'https://example.org/a.css';</style>", True),
    ('<script>import("https://esm.example.org/m.js")</script>', True),
    ('<a href="https://arxiv.org/abs/1706.03762">the paper</a>', False),  # a link, not a load
    ('<svg xmlns="http://www.w3.org/2000/svg"></svg><img src="data:image/png;base64,AAAA">', False),
    ("<style>/* see https://meyerweb.com/x */ a { color: red }</style>", False),
])
def test_the_remote_reference_check_itself(tmp_path, snippet, flagged):
    page = tmp_path / "page.html"
    page.write_text(f"<!DOCTYPE html><html><head></head><body>{snippet}</body></html>")
    assert bool(remote_references(page)) is flagged


def test_the_check_catches_nbconverts_default_export(tmp_path):
    """nbconvert's stock "lab" HTML loads require.js and MathJax from CDNs: the check must see it."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_filename(str(ROOT / "notebooks" / "02_softmax.ipynb"))
    page = tmp_path / "stock.html"
    page.write_text(body, encoding="utf-8")
    problems = remote_references(page)
    assert any("<script src=" in p for p in problems), problems


def test_nothing_is_executed_the_pages_show_the_committed_outputs(site):
    for path in _lesson_paths():
        nb = nbformat.read(path, as_version=4)
        page = (site / path.with_suffix(".html").name).read_text(encoding="utf-8")
        text = html.unescape(page)
        checked = [cell for cell in nb.cells
                   if cell.cell_type == "code" and "nbval-check-output" in cell.metadata.get("tags", [])]
        for cell in checked:
            for output in cell.outputs:
                if output.output_type == "stream" and output.text.strip():
                    first = output.text.strip().splitlines()[0].strip()
                    assert first in text, (path.name, first)
        pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert page.count('src="data:image/png;base64,') == pngs, path.name


def test_pages_leave_out_the_setup_cell(site):
    for path in _lesson_paths():
        nb = nbformat.read(path, as_version=4)
        assert "setup" in nb.cells[0].metadata.get("tags", [])  # every lesson opens with it ...
        text = html.unescape((site / path.with_suffix(".html").name).read_text(encoding="utf-8"))
        assert "importlib.util.find_spec" not in text  # ... and no page shows it


def test_widget_outputs_keep_only_their_static_picture(site):
    with_explorers = [p for p in _lesson_paths() if any(
        WIDGET_VIEW in o.get("data", {}) for c in nbformat.read(p, as_version=4).cells
        if c.cell_type == "code" for o in c.outputs)]
    assert {p.name[:2] for p in with_explorers} >= {"02", "03", "04", "05", "07"}
    for path in with_explorers:
        page = (site / path.with_suffix(".html").name).read_text(encoding="utf-8")
        assert "widget-view" not in page and "widget-state" not in page and "jupyter-widgets" not in page
        nb = nbformat.read(path, as_version=4)
        explorer = next(c for c in nb.cells if c.cell_type == "code" and "_explorer(" in c.source)
        png = next(o["data"]["image/png"] for o in explorer.outputs if "image/png" in o.get("data", {}))
        assert png.strip().replace("\n", "")[:200] in page  # the explorer's starting state, as a picture


def test_a_folder_that_is_not_a_site_is_never_emptied(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(SystemExit, match="not a course site"):
        build_site(precious)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_a_rebuild_replaces_the_previous_site(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_dot_products.ipynb", "02_softmax.ipynb"):
        (notebooks / name).write_bytes((ROOT / "notebooks" / name).read_bytes())
    out = tmp_path / "site"
    build_site(out, notebooks=notebooks, exercises=tmp_path / "none")
    (notebooks / "02_softmax.ipynb").unlink()
    (out / "stale.html").write_text("old")
    written = build_site(out, notebooks=notebooks, exercises=tmp_path / "none")
    assert [p.name for p in written] == ["index.html", "01_dot_products.html"]
    assert not (out / "stale.html").exists() and not (out / "02_softmax.html").exists()
    assert not (out / "exercises").exists()
    with pytest.raises(ValueError, match="no lesson"):
        build_site(tmp_path / "empty-site", notebooks=tmp_path / "none")
