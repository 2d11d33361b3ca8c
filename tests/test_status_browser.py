"""The status page in a real browser: Debian's headless Chromium, driven by Playwright
(sync API), against a server on 127.0.0.1. It renders the overview and a job queue's
page, keeps them live from the event stream without a reload, and acts with the token.

Chromium is started once for the whole file. Without Chromium or Playwright the tests
fail, never skip (``apt-get install chromium``; Playwright is in the test extra and
downloads no browser of its own). Screenshots of the pages go to ``$CORRAL_ARTIFACTS``,
or ``test-artifacts/`` at the repository's root.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import wait_until

from corral.adapters.client import connect
from corral.kernel import Empty
from corral.transports.background import background_server

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the fixture fails the tests, with how to install it
    expect = sync_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# How often the page's streams look for a change, in seconds: a job queue's view
# changes at every look (its ages move), so the page re-renders 20 times a second,
# which the clicks below must survive (the page holds an update while a pointer is
# down).
FAST = 0.05
TIMEOUT = 10_000  # ms: a generous bound on every wait, never a measured duration
TOKEN = "s3cret"
ERROR = "Traceback (most recent call last):\nValueError: bad frame 7"
ARTIFACTS = Path(os.environ.get("CORRAL_ARTIFACTS")
                 or Path(__file__).resolve().parent.parent / "test-artifacts")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """One page of the status site, with what would betray a reload or a script
    error."""

    page: Page
    loads: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def mark(self) -> None:
        """Mark the document: a reload would lose the mark (``Scene.open`` marks it)."""
        self.page.evaluate("window.__marker = 1")

    def updates(self) -> int:
        return int(self.page.evaluate("document.body.dataset.updates"))

    def wait_for_update(self) -> None:
        """Until the page renders a message that comes after this call."""
        seen = self.updates()
        self.page.wait_for_function(f"Number(document.body.dataset.updates) > {seen}")

    def assert_not_reloaded(self) -> None:
        assert 1 == self.page.evaluate("window.__marker")
        assert 1 == len(self.loads), self.loads
        assert [] == self.errors

    def cell(self, row: str, name: str) -> Locator:
        return self.page.locator(f'{row} [data-field="{name}"]')

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, path
        return path


@dataclass
class Scene:
    """A server with its status page: a job queue "render" (max_attempts=1) holding a
    stalled and a ready job, a list "inbox" of three items, and a claim parked on job
    queue "idle" by a second client; a fresh browser context for its pages."""

    client: Any
    http: str
    context: BrowserContext
    stalled: str
    ready: str
    release: Callable[[], None]

    def open(self, path: str) -> Tab:
        page = self.context.new_page()
        tab = Tab(page)
        page.on("load", lambda _: tab.loads.append(page.url))
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        page.on("console", lambda message: tab.errors.append(message.text)
                if message.type == "error" else None)
        page.goto(self.http + path)
        expect(page.locator("#live")).to_have_text("live")
        tab.mark()
        return tab


@pytest.fixture
def scene(browser: Browser) -> Iterator[Callable[..., Scene]]:
    """Makes the scene, with or without a server token; undoes it in reverse order:
    the browser's pages first (their streams end), then the parked claim, the clients
    and the server."""
    with ExitStack() as stack:

        def make(token: str | None = None, interval: float = FAST) -> Scene:
            urls = stack.enter_context(background_server(
                zmq=False, http={"interval": interval}, token=token))
            client = stack.enter_context(connect(urls.tcp, token=token))
            other = stack.enter_context(connect(urls.tcp, token=token))
            render = client.jobs("render", max_attempts=1)
            stalled = render.put("frame 7")
            render.cancel(render.claim(timeout=1), reason=ERROR)
            ready = render.put("frame 8")
            inbox = client.list("inbox")
            for item in ("a", "b", "c"):
                inbox.push_back(item)
            claimed: list[Any] = []
            idle = other.jobs("idle")
            parked = threading.Thread(target=lambda: claimed.append(
                _claim_or_empty(idle)), daemon=True)
            parked.start()
            wait_until(lambda: 1 == client.jobs("idle").statistics().waiters)

            def release() -> None:
                if parked.is_alive():
                    client.jobs("idle").put("wake up")
                    parked.join(10)
                    assert ["wake up"] == [job.item for job in claimed]

            stack.callback(release)
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            context.set_default_timeout(TIMEOUT)
            stack.callback(context.close)
            return Scene(client, urls.http, context, stalled, ready, release)

        yield make


def _claim_or_empty(jobs: Any) -> Any:
    try:
        return jobs.claim(timeout=30)
    except Empty:
        return None


def job_row(id: str) -> str:
    return f'tr[data-job="{id}"]'


# -- rendering ----------------------------------------------------------------------------


def test_the_overview_renders_every_container(scene: Callable[..., Scene]) -> None:
    tab = scene().open("/")
    page = tab.page
    expect(page.locator("#containers tbody tr")).to_have_count(3)
    render, inbox, idle = ('tr[data-container="render"]', 'tr[data-container="inbox"]',
                           'tr[data-container="idle"]')
    expect(page.locator(f'{render} [data-field="name"] a')).to_have_text("render")
    expect(page.locator(f'{render} [data-field="name"] a')).to_have_attribute(
        "href", "/containers/render")
    expect(tab.cell(render, "kind")).to_have_text("job")
    expect(tab.cell(render, "depth")).to_have_text("2")
    expect(tab.cell(render, "ready")).to_have_text("1")
    expect(tab.cell(render, "stalled")).to_have_text("1")
    expect(tab.cell(render, "stalled")).to_have_class("num hot")
    expect(tab.cell(inbox, "kind")).to_have_text("volatile_list")
    expect(tab.cell(inbox, "depth")).to_have_text("3")
    expect(tab.cell(inbox, "stalled")).to_have_text("")
    expect(tab.cell(idle, "waiters")).to_have_text("1")
    expect(page.locator("#info")).to_contain_text("server · v")
    expect(page.locator("#info")).to_contain_text("read-only")
    expect(page).to_have_title("corral status")
    tab.screenshot("status-overview.png")
    tab.assert_not_reloaded()


def test_a_job_queues_page_shows_its_stalled_job_and_error(scene: Callable[..., Scene]
                                                           ) -> None:
    made = scene()
    tab = made.open("/containers/render")
    page = tab.page
    stalled, ready = job_row(made.stalled), job_row(made.ready)
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    expect(page.locator("#jobs tbody tr").first).to_have_attribute("data-job", made.stalled)
    expect(tab.cell(stalled, "state")).to_have_text("stalled")
    expect(tab.cell(stalled, "attempt")).to_have_text("1")
    expect(tab.cell(stalled, "item")).to_have_text("frame 7")
    error = tab.cell(stalled, "error")
    expect(error).to_contain_text("ValueError: bad frame 7")
    expect(error).to_have_attribute("title", ERROR)
    expect(tab.cell(ready, "state")).to_have_text("ready")
    expect(page.locator('#counts [data-count="stalled"]')).to_have_text("stalled 1")
    expect(page.locator('#metrics [data-metric="stalled"]')).to_have_text("1")
    expect(page.locator('[data-field="options"]')).to_contain_text("max_attempts=1")
    expect(page.locator("button[data-action]")).to_have_count(0)  # no token: read-only
    expect(page).to_have_title("render · corral")
    # An expanded error stays expanded while updates re-render the table.
    error.click()
    expect(error).to_have_class("err open")
    tab.wait_for_update()
    expect(error).to_have_class("err open")
    tab.screenshot("status-render.png")
    tab.assert_not_reloaded()

    waiters = made.open("/containers/idle")
    rows = waiters.page.locator("#waiters tr[data-waiter]")
    expect(rows).to_have_count(1)
    expect(rows.locator('[data-field="op"]')).to_have_text("claim")
    expect(rows.locator('[data-field="session"]')).to_contain_text("127.0.0.1:")
    expect(rows.locator('[data-field="deadline_in"]')).to_contain_text(" s")
    expect(waiters.page.locator('#counts [data-count="ready"]')).to_have_text("ready 0")
    waiters.assert_not_reloaded()


# -- live updates -------------------------------------------------------------------------


def test_changes_arrive_without_a_reload(scene: Callable[..., Scene]) -> None:
    made = scene()
    overview = made.open("/")
    depth = overview.cell('tr[data-container="inbox"]', "depth")
    expect(depth).to_have_text("3")
    seen = overview.updates()
    inbox = made.client.list("inbox")
    inbox.push_back("d")
    inbox.push_back("e")
    expect(depth).to_have_text("5")
    assert overview.updates() > seen
    overview.assert_not_reloaded()

    render = made.open("/containers/render")
    added = made.client.jobs("render").put("frame 9")
    expect(render.cell(job_row(added), "state")).to_have_text("ready")
    expect(render.page.locator("#jobs tbody tr")).to_have_count(3)
    expect(render.page.locator('#counts [data-count="ready"]')).to_have_text("ready 2")
    render.assert_not_reloaded()

    idle = made.open("/containers/idle")
    expect(idle.page.locator("tr[data-waiter]")).to_have_count(1)
    made.release()  # the parked claim gets a job and leaves
    expect(idle.page.locator("tr[data-waiter]")).to_have_count(0)
    expect(idle.page.locator("#waiters td.empty")).to_have_text("none")
    expect(idle.page.locator('#counts [data-count="claimed"]')).to_have_text("claimed 1")
    idle.assert_not_reloaded()


# -- actions ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["url", "box"])
def test_retry_with_the_token_from_the_page(scene: Callable[..., Scene], how: str) -> None:
    """The token in the page's URL, or typed into its token box; the stalled job's retry
    button makes it ready: in the page, without a reload, and in the server."""
    made = scene(token=TOKEN)
    stalled = job_row(made.stalled)
    if how == "url":
        tab = made.open(f"/containers/render?token={TOKEN}")
    else:
        tab = made.open("/containers/render")
        expect(tab.cell(stalled, "state")).to_have_text("stalled")
        expect(tab.page.locator("button[data-action]")).to_have_count(0)
        tab.page.fill("#tok", TOKEN)
        tab.page.click("#usetok")
        expect(tab.page.locator("#msg")).to_have_text("token stored for this tab")
        expect(tab.page.locator("#tok")).to_have_attribute("placeholder", "token (set)")
    page = tab.page
    button = page.locator(f'{stalled} button[data-action="retry"]')
    expect(button).to_have_text("retry")
    expect(page.locator(f'{stalled} button[data-action="retract"]')).to_have_text("retract")
    expect(page.locator('button[data-action="retry-all"]')).to_be_visible()
    expect(page.locator(f'{job_row(made.ready)} button')).to_have_count(0)
    if how == "url":
        tab.screenshot("status-render-actions.png")
    button.click()
    expect(tab.cell(stalled, "state")).to_have_text("ready")
    expect(page.locator("#msg")).to_have_text(f"retry job {made.stalled}: ok (retried 1)")
    expect(page.locator(f"{stalled} button")).to_have_count(0)
    expect(page.locator('#counts [data-count="stalled"]')).to_have_text("stalled 0")
    assert "ready" == made.client.jobs("render").state(made.stalled).value
    tab.assert_not_reloaded()
