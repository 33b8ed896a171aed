"""The documentation site in a real headless browser with no network: every Mermaid diagram renders
to SVG from the site's own copy of Mermaid (a page that needed a CDN would show its source)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.test_timeline_browser import browser  # noqa: F401 - the shared Chromium

pytestmark = pytest.mark.integration
DOCS = ROOT / "docs"


# Material draws each diagram into a closed shadow root; opened here so the test can look inside.
OPEN_SHADOWS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
"""
DRAWN = "document.querySelectorAll('.mermaid')"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (DOCS / "javascripts" / "mermaid.min.js").exists(), "no Mermaid copy: `make docs-assets` (part of make test)"
    built = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--site-dir", str(built)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return built


def _pages_with_diagrams() -> list[tuple[str, int]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        count = page.read_text().count("```mermaid")
        if count:
            found.append((str(page.relative_to(DOCS).with_suffix("")), count))
    return found


@pytest.mark.parametrize(("page", "diagrams"), _pages_with_diagrams())
def test_every_diagram_renders_offline(site: Path, browser: Any, page: str, diagrams: int) -> None:  # noqa: F811
    html = site / page / "index.html" if page != "index" else site / "index.html"
    context = browser.new_context()
    asked: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:  # no network: what the page asks for elsewhere is refused, and recorded
            asked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    context.add_init_script(OPEN_SHADOWS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(html.as_uri())
    svgs = f"[...{DRAWN}].filter(n => n.shadowRoot && n.shadowRoot.querySelector('svg'))"
    tab.wait_for_function(f"{svgs}.length >= {diagrams}", timeout=30_000)
    rendered = tab.evaluate(f"{svgs}.map(n => n.shadowRoot.querySelectorAll('svg g').length)")
    raw = tab.eval_on_selector_all("pre.mermaid code, div.mermaid > code", "nodes => nodes.length")
    context.close()
    assert len(rendered) == diagrams
    assert all(groups > 0 for groups in rendered), rendered  # drawn, not an empty error box
    assert raw == 0  # no diagram left as its source
    assert not [u for u in asked if re.search(r"mermaid|unpkg|jsdelivr", u)], asked
    assert not [e for e in errors if "mermaid" in e.lower() or "syntax error" in e.lower()], errors


SHOTS = ROOT / ".site-shots"  # kept out of the repository (.gitignore): look at them after `make test`
MAIN_PAGES = ["index", "playbooks", "reference/playbooks/compromised-node", "reference/actions/ec2-capture-memory",
              "approval", "node-types"]  # fmt: skip


@pytest.mark.parametrize("page", MAIN_PAGES)
def test_each_main_page_fits_its_window_and_is_photographed(site: Path, browser: Any, page: str) -> None:  # noqa: F811
    html = site / "index.html" if page == "index" else site / page / "index.html"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    tab = context.new_page()
    tab.goto(html.as_uri())
    tab.wait_for_load_state("load")
    # Nothing wider than the window: a table scrolls inside its own box, never the page.
    page_width = tab.evaluate("document.documentElement.scrollWidth")
    clipped = tab.evaluate("""[...document.querySelectorAll('.md-content td, .md-content th, .md-content p')]
        .filter(e => getComputedStyle(e).overflow === 'hidden' && e.scrollWidth > e.clientWidth + 1).length""")
    SHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{page.replace('/', '-')}.png"), full_page=True)
    context.close()
    assert page_width <= 1280, f"{page} is {page_width} px wide"
    assert clipped == 0
