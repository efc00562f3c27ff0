"""The worklist in a real browser: Debian's headless Chromium driven by Playwright.

Opens the worklist, checks the order against the API, waits for the page to refresh
itself, opens a positive study, sees its overlay picture load, records feedback, and
saves screenshots under ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.web.access import Access
from tests.service.test_web import World

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Chromium as root in a closed network: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    world = World(tmp_path_factory.mktemp("browser"))
    server = world.server(Access()).start()
    yield server
    server.stop()
    world.engine.dispose()


def test_reader_opens_worklist_and_study_and_gives_feedback(site, require_tool):
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    expected = [r["study_instance_uid"] for r in httpx.get(site.url + "api/worklist").json()]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(site.url)
            shown = page.eval_on_selector_all(
                "#worklist tbody tr[data-uid]", "rows => rows.map(r => r.dataset.uid)"
            )
            assert shown == expected
            # The table refreshes itself from the API without a reload.
            page.wait_for_function(
                "document.getElementById('refreshed').textContent.startsWith('updated')",
                timeout=15000,
            )
            shown = page.eval_on_selector_all(
                "#worklist tbody tr[data-uid]", "rows => rows.map(r => r.dataset.uid)"
            )
            assert shown == expected
            page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)

            page.click("#worklist tbody tr.state-positive a")
            page.wait_for_selector("figure.image img")
            page.wait_for_function(
                "[...document.querySelectorAll('figure.image img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=30000,
            )
            assert page.locator("h1.state-positive").count() == 1
            page.check("input[value='agree']")
            page.fill("input[name='comment']", "seen in the browser test")
            page.click("#send-feedback")
            page.wait_for_selector("#feedback-history li:has-text('Agree')")
            assert "seen in the browser test" in page.inner_text("#feedback-history")
            page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "worklist.png").stat().st_size > 10_000
    uid = expected[0]
    history = httpx.get(site.url + f"api/studies/{uid}").json()["feedback_history"]
    assert [f["kind"] for f in history] == ["agree"]
