"""The web console in a real browser: Debian's headless Chromium (`/usr/bin/chromium`, installed by
scripts/install-system-deps; Playwright never downloads one) against one shipped `wrenn server`
process per module (tests/e2e's `shipped`). Screenshots go to $WRENN_TEST_ARTIFACTS/console
(default /tmp/wrenn-test-artifacts/console), outside the repository.
"""

from __future__ import annotations

import email
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.policy import default as default_policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from wrenn_platform.control_plane.console import STATIC_DIR

from ..e2e import conftest as e2e
from ..e2e.conftest import Shipped

pytestmark = pytest.mark.root

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
shipped = e2e.shipped  # the shipped server and its admin account, one per test module

ARTIFACTS = Path(os.environ.get("WRENN_TEST_ARTIFACTS", "/tmp/wrenn-test-artifacts")) / "console"
REPO = Path(__file__).resolve().parents[2]
_LINK = r"https?://\S+{path}\?token=[A-Za-z0-9_\-%.~]+"


@pytest.fixture(scope="session", autouse=True)
def console_assets() -> None:
    """The pinned xterm.js files the console serves, fetched as `make run` fetches them."""
    subprocess.run([str(REPO / "scripts" / "fetch-console-assets")], check=True)
    assert (STATIC_DIR / "vendor" / "xterm.js").is_file()


# Module scope, not session: sync Playwright runs an event loop on this thread while it is open,
# and the asyncio tests that follow in the same run need the thread without one.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, shipped: Shipped) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=shipped.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: (errors.append(str(error)), print("page error:", error)))
    page.on("console", lambda m: m.type == "error" and print("console:", m.text))
    page.on("response", lambda r: r.status >= 400 and print("answer:", r.status, r.request.method, r.url))
    page.on("requestfailed", lambda r: print("request failed:", r.method, r.url, r.failure))
    page.on("dialog", lambda dialog: dialog.accept())  # the console's confirm() before a deletion
    yield page
    screenshot(page, f"{request.node.name}-end")
    assert not errors, f"uncaught errors in the page: {errors}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@dataclass
class User:
    email: str
    password: str


def emailed_link(shipped: Shipped, address: str, path: str = "/activate") -> str:
    """The link to `path` (`/activate`, `/reset-password`) of the newest such email to `address` in
    the server's outbox."""
    links = []
    for eml in sorted((shipped.server.data_dir / "outbox").glob("*.eml")):
        message = email.message_from_bytes(eml.read_bytes(), policy=default_policy)
        if message["To"] == address:
            links += re.findall(_LINK.format(path=path), message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert links, f"no email with a {path} link to {address}"
    return links[-1]


def log_in(page: Page, address: str, password: str) -> None:
    page.goto("/#/login")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Capsules").wait_for()


def new_address() -> str:
    return f"console-{secrets.token_hex(4)}@example.com"
