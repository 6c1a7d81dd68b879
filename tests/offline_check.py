"""Does a built file load anything from the network? Shared by test_site.py and test_slides.py.

``remote_references(path)`` lists every reference in an HTML, JS, CSS, SVG or JSON file that would
make a browser load something from the network: a remote URL in any loading attribute (src, href
of <link>, ...; navigation links <a href> excepted), in CSS url()/@import, or in scripts, apart
from a short list of hosts that appear only as XML namespaces, licence text and messages.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

# Hosts that occur in the copied files only as XML namespaces, licence headers or comments.
NAMESPACE_HOSTS = {"www.w3.org", "www.apache.org", "www.mathjax.org", "mathjax.org", "exslt.org",
                   "www.stixfonts.org", "github.com", "meyerweb.com", "material-components-web.appspot.com",
                   # reveal.js's licence headers; its notes plugin's bundled markdown parser's error messages
                   "hakim.se", "revealjs.com", "marked.js.org"}
REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //host, ws://
LOADING_ATTRIBUTES = {"src", "href", "srcset", "data", "poster", "action", "formaction", "background",
                      "manifest", "xlink:href", "icon"}
URL = re.compile(r"(?:https?|wss?|ftp):?//([a-z0-9.-]+)", re.IGNORECASE)


class Page(HTMLParser):
    """The loading attributes of an HTML page (.references) and its inline scripts and styles (.inline)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.inline: list[tuple[str, str]] = []  # (tag, text) of <script>/<style>
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in LOADING_ATTRIBUTES and value is not None:
                self.references.append((tag, name, value))
            if name == "style" and value:
                self.inline.append(("style-attribute", value))
        if tag in ("script", "style"):
            self._open = tag

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open:
            self.inline.append((self._open, data))


def _strip_css_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)


def remote_references(path: Path) -> list[str]:
    """Every reference in a site file that would make a browser load something from the network."""
    text = path.read_text(encoding="utf-8", errors="replace")
    problems = []

    def scan_code(kind: str, code: str):
        if kind in ("style", "style-attribute") or path.suffix == ".css":
            code = _strip_css_comments(code)
            for match in re.finditer(r"(?:url\(\s*['\"]?|@import\s+['\"])([^'\")\s]+)", code):
                if REMOTE.match(match.group(1)):
                    problems.append(f"{path.name}: CSS loads {match.group(1)}")
        for match in URL.finditer(code):
            if match.group(1).lower() not in NAMESPACE_HOSTS:
                problems.append(f"{path.name}: {kind} mentions {match.group(0)}")

    if path.suffix in (".html", ".htm"):
        page = Page()
        page.feed(text)
        for tag, name, value in page.references:
            if tag == "a" and name == "href":
                continue  # a link the reader may follow; it loads nothing by itself
            if REMOTE.match(value):
                problems.append(f"{path.name}: <{tag} {name}={value[:80]!r}>")
        for kind, code in page.inline:
            scan_code(kind, code)
    elif path.suffix in (".js", ".css", ".svg", ".json"):
        scan_code(path.suffix, text)
    return problems
