"""course_lib.authoring.slides: offline reveal.js decks of the committed lessons (make slides).

The decks are built once for the module (reveal.js comes from the npm tarball cached in
build/cache/; the first run downloads it with npm, and without npm the fixture fails, naming what
to install). The tests check one deck per lesson, its slides, that the figures and the checked
outputs are kept and the setup cell is not, that no file of the build loads anything from the
network, and the slide-type rules on small synthetic notebooks.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib.authoring import slides
from course_lib.authoring.build_exercises import ROOT
from course_lib.authoring.site import lessons
from course_lib.authoring.slides import REVEAL_DIR, REVEAL_VERSION, build_slides, slide_type, with_slide_types
from offline_check import remote_references

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _needs_npm_or_cache():
    if not (slides.CACHE / f"reveal.js-{REVEAL_VERSION}.tgz").is_file() and shutil.which("npm") is None:
        pytest.fail(f"the slides need reveal.js {REVEAL_VERSION} from the npm registry, and npm is not installed "
                    "(apt-get install npm, or install Node.js); CI installs it")


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    _needs_npm_or_cache()
    out = tmp_path_factory.mktemp("course") / "slides"
    written = build_slides(out)
    assert [p.name for p in written] == [p.stem + ".slides.html" for p in lessons(ROOT / "notebooks")]
    return out


def _lesson_paths() -> list[Path]:
    return lessons(ROOT / "notebooks")


def _deck(decks: Path, lesson: Path) -> str:
    return (decks / f"{lesson.stem}.slides.html").read_text(encoding="utf-8")


def _headings(nb, prefix: str) -> int:
    return sum(c.cell_type == "markdown" and c.source.lstrip("\n").startswith(prefix) for c in nb.cells)


def test_one_deck_per_lesson_listed_in_the_index(decks):
    paths = _lesson_paths()
    assert len(paths) >= 7
    assert sorted(p.name for p in decks.glob("*.slides.html")) == [p.stem + ".slides.html" for p in paths]
    index = (decks / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<li><a href="([^"]+)">', index) == [p.stem + ".slides.html" for p in paths]


def test_each_deck_has_a_slide_per_heading(decks):
    for path in _lesson_paths():
        nb = nbformat.read(path, as_version=4)
        page = _deck(decks, path)
        top = re.search(r'<div class="slides">(.*)</div>\s*</div>\s*</main>', page, flags=re.DOTALL).group(1)
        # nbconvert nests: <section> per slide (left to right), <section> per sub-slide inside it.
        depth, slides_, subslides = 0, 0, 0
        for tag in re.findall(r"<(/?)section\b", top):
            if tag == "":
                depth += 1
                slides_ += depth == 1
                subslides += depth == 2
            else:
                depth -= 1
            assert 0 <= depth <= 2, path.name
        assert depth == 0, path.name
        sections = _headings(nb, "# ") + _headings(nb, "## ")
        assert slides_ == sections >= 2, (path.name, slides_, sections)
        assert subslides >= slides_ + _headings(nb, "### "), path.name


def test_every_figure_and_every_checked_output_is_in_the_deck(decks):
    for path in _lesson_paths():
        nb = nbformat.read(path, as_version=4)
        page = _deck(decks, path)
        text = html.unescape(page)
        pngs = [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if "image/png" in o.get("data", {})]
        assert pngs, path.name
        assert page.count('src="data:image/png;base64,') == len(pngs), path.name
        for png in pngs:
            assert png.strip().replace("\n", "")[:300] in page, path.name
        for cell in nb.cells:
            if cell.cell_type == "code" and "nbval-check-output" in cell.metadata.get("tags", []):
                for output in cell.outputs:
                    if output.output_type == "stream" and output.text.strip():
                        assert output.text.strip().splitlines()[0].strip() in text, path.name


def test_decks_leave_out_the_setup_cell_and_code_without_output(decks):
    for path in _lesson_paths():
        nb = nbformat.read(path, as_version=4)
        assert "setup" in nb.cells[0].metadata.get("tags", [])  # every lesson opens with it ...
        assert "importlib.util.find_spec" in nb.cells[0].source
        # the deck's text: highlighting spans removed, entities decoded
        text = html.unescape(re.sub(r"<[^>]+>", "", _deck(decks, path)))
        assert "importlib.util.find_spec" not in text  # ... and no deck shows it
        shown = "\n".join(c.source for c in nb.cells[1:] if c.cell_type == "markdown" or c.get("outputs"))
        silent = [c for c in nb.cells[1:] if c.cell_type == "code" and not c.outputs]
        lines = [line.strip() for c in silent for line in c.source.splitlines()
                 if len(line.strip()) > 20 and line.strip() not in shown]
        assert lines or not silent, path.name
        for line in lines:
            assert line not in text, (path.name, line)


def test_no_file_of_the_decks_loads_anything_from_the_network(decks):
    files = [p for p in decks.rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert {".html", ".js", ".css"} <= suffixes
    assert (decks / REVEAL_DIR / "dist" / "reveal.js").is_file()
    assert (decks / "_static" / "mathjax" / "MathJax.js").is_file()
    problems = [problem for path in files for problem in remote_references(path)]
    assert problems == []
    for page in decks.glob("*.slides.html"):
        text = page.read_text(encoding="utf-8")
        for gone in ("require.js", "require(", "jquery", "unpkg", "cdnjs", "mermaid", "html-manager"):
            assert gone not in text.lower(), (page.name, gone)
        assert f'<script src="{REVEAL_DIR}/dist/reveal.js"></script>' in text
        assert 'src="_static/mathjax/MathJax.js?config=' in text


def test_the_check_catches_nbconverts_stock_slides(tmp_path):
    """nbconvert's stock reveal template loads reveal.js from unpkg and require.js from a CDN."""
    from nbconvert import SlidesExporter

    body, _ = SlidesExporter().from_filename(str(ROOT / "notebooks" / "02_softmax.ipynb"))
    page = tmp_path / "stock.slides.html"
    page.write_text(body, encoding="utf-8")
    problems = remote_references(page)
    assert any("unpkg.com" in p for p in problems) and any("require" in p for p in problems), problems


def test_lesson_links_point_to_decks(decks):
    for page in decks.glob("*.slides.html"):
        for target in re.findall(r'href="(\d\d_\w+\.(?:ipynb|slides\.html))', page.read_text(encoding="utf-8")):
            assert target.endswith(".slides.html") and (decks / target).is_file(), (page.name, target)


def _cell_png():
    return new_code_cell("plot()", outputs=[new_output("display_data", data={"image/png": PNG})])


@pytest.mark.parametrize("cell, previous, expected", [
    (new_markdown_cell("# 01 — Title\n\ntext"), None, "slide"),
    (new_markdown_cell("\n## 2. A section"), None, "slide"),
    (new_markdown_cell("### A sub-section"), None, "subslide"),
    (new_markdown_cell("#### Deeper"), None, "-"),
    (new_markdown_cell("**Memory.** Measure it."), None, "subslide"),
    (new_markdown_cell("What the figure shows."), _cell_png(), "subslide"),
    (new_markdown_cell("Plain prose."), new_code_cell("x = 1"), "-"),
    (new_markdown_cell("#hashtag, not a heading"), None, "-"),
    (new_code_cell("def f(): pass"), None, "skip"),
    (new_code_cell("print(1)", outputs=[new_output("stream", text="1\n")]), None, "-"),
    (_cell_png(), None, "-"),
    (new_code_cell("pip install", metadata={"tags": ["setup"]}, outputs=[new_output("stream", text="ok")]), None,
     "skip"),
    (new_markdown_cell("## A section", metadata={"tags": ["slides-skip"]}), None, "skip"),
    (new_markdown_cell("## Kept below", metadata={"slideshow": {"slide_type": "subslide"}}), None, "subslide"),
    (new_code_cell("def f(): pass", metadata={"slideshow": {"slide_type": "fragment"}}), None, "fragment"),
    (new_markdown_cell("x", metadata={"slideshow": {"slide_type": "notes"}, "tags": ["slides-skip"]}), None,
     "notes"),
])
def test_slide_type_rules(cell, previous, expected):
    assert slide_type(cell, previous) == expected


def test_slide_type_rejects_what_is_not_a_cell():
    with pytest.raises(TypeError, match="cell"):
        slide_type("## not a cell")


def test_an_authors_override_survives_and_the_notebook_is_not_rewritten(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = new_notebook(cells=[
        new_code_cell("SETUP_CODE = 1", metadata={"tags": ["setup"]}, outputs=[new_output("stream", text="ok")]),
        new_markdown_cell("# 01 — Synthetic"),
        new_markdown_cell("## First section"),
        new_markdown_cell("## Demoted heading", metadata={"slideshow": {"slide_type": "subslide"}}),
        new_markdown_cell("ONLY_IN_NOTEBOOK", metadata={"tags": ["slides-skip"]}),
        new_code_cell("SHOWN_ANYWAY = 2", metadata={"slideshow": {"slide_type": "fragment"}}),
        _cell_png(),
    ])
    path = notebooks / "01_synthetic.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()

    typed = with_slide_types(nbformat.read(path, as_version=4))
    assert [c.metadata.slideshow.slide_type for c in typed.cells] == ["slide", "slide", "subslide", "skip",
                                                                      "fragment", "-"]  # setup cell dropped
    _needs_npm_or_cache()
    out = tmp_path / "slides"
    (deck,) = build_slides(out, notebooks=notebooks)
    assert path.read_bytes() == before
    page = deck.read_text(encoding="utf-8")
    assert "ONLY_IN_NOTEBOOK" not in page and "SETUP_CODE" not in page
    assert re.search(r'<div class="fragment"[^>]*>.*SHOWN_ANYWAY', page, flags=re.DOTALL)
    # two slides, the second holding two sub-slides: the override made "Demoted heading" a sub-slide
    body = re.sub(r"\s+", "", re.search(r'<div class="slides">(.*)</main>', page, flags=re.DOTALL).group(1))
    opened = [m.start() for m in re.finditer(r"<section", body)]
    assert len(opened) == 5  # slide 1 (title), its sub-slide; slide 2, its two sub-slides
    assert body.index("Demoted") > body.index("First") and body.count("</section></section>") == 2
    assert page.count('src="data:image/png;base64,') == 1


def test_a_folder_that_is_not_a_build_of_the_slides_is_never_emptied(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    _needs_npm_or_cache()
    with pytest.raises(SystemExit, match="not a build of the slides"):
        build_slides(precious)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_without_npm_and_cache_the_message_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match=r"npm.*not installed.*apt-get install npm"):
        slides.fetch_reveal(tmp_path / "empty-cache")


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path):
    (tmp_path / f"reveal.js-{REVEAL_VERSION}.tgz").write_bytes(b"not reveal.js")
    with pytest.raises(SystemExit, match="not the pinned"):
        slides.fetch_reveal(tmp_path)
