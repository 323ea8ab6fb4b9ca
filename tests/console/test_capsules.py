"""Capsules in the console: created and followed live, a terminal over the PTY WebSocket, files,
pause/resume/destroy; every step checked as a person sees it in the browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ..e2e.conftest import Shipped
from .conftest import log_in, screenshot

pytestmark = pytest.mark.root  # capsules need root, like tests/e2e

START_S = 120_000  # ms: a capsule's start on this shared machine


def _create(page: Page) -> str:
    """Click "Create capsule"; the new capsule's id (from the API's answer), once its row shows."""
    with page.expect_response(lambda r: r.url.endswith("/v1/capsules") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create capsule").click()
    assert answer.value.status == 202, answer.value.text()
    capsule_id = str(answer.value.json()["id"])
    expect(page.locator(f'tr[data-capsule="{capsule_id}"]')).to_be_visible()
    return capsule_id


def test_create_a_capsule_and_see_it_go_running_live_then_pause_resume_destroy(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_label("Memory (MB)").fill("256")
    capsule_id = _create(page)
    row = page.locator(f'tr[data-capsule="{capsule_id}"]')
    # No reload: the row changes as the events stream reports the capsule's states.
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "running", timeout=START_S)
    expect(row).to_contain_text("256 MB")
    screenshot(page, "capsules")

    row.get_by_role("button", name="Pause").click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "paused", timeout=START_S)
    row.get_by_role("button", name="Resume").click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "running", timeout=START_S)
    row.get_by_role("button", name="Destroy").click()  # the confirm() is accepted by the fixture
    expect(row).to_have_count(0, timeout=START_S)  # stopped capsules are hidden by default
    page.get_by_label("Show stopped").check()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "stopped")


def test_a_refused_or_failed_create_shows_why(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_label("Memory (MB)").fill("99999999")
    page.get_by_role("button", name="Create capsule").click()
    alert = page.get_by_role("form", name="Create capsule").locator("xpath=..").get_by_role("alert")
    expect(alert).to_contain_text("memory_mb")  # the API's 400 message, next to the form

    page.get_by_label("Memory (MB)").fill("256")
    page.get_by_label("Template").fill("no-such-template")
    capsule_id = _create(page)  # accepted (202), then the create fails: the row says why
    row = page.locator(f'tr[data-capsule="{capsule_id}"]')
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "error", timeout=START_S)
    expect(row.locator(".error")).to_contain_text("no-such-template")


def test_terminal_and_files_of_a_running_capsule(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    capsule_id = _create(page)
    page.get_by_role("link", name=capsule_id).click()
    expect(page.get_by_role("heading", name=capsule_id)).to_be_visible()
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "running", timeout=START_S)

    terminal = page.get_by_label("Terminal", exact=True)
    expect(page.get_by_role("status")).to_have_text("Connected", timeout=60_000)
    terminal.click()
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")
    answer = terminal.locator(".xterm-rows > div").filter(has_text=re.compile(r"^42\s*$"))  # a line of its own
    expect(answer).to_have_count(1, timeout=30_000)
    screenshot(page, "terminal")

    page.get_by_role("tab", name="Files").click()
    page.get_by_label("New directory name").fill("notes")
    page.get_by_role("button", name="Make directory").click()
    page.get_by_role("link", name="notes/").click()
    expect(page.get_by_label("Directory", exact=True)).to_have_value("/home/user/notes")
    page.get_by_label("Upload files").set_input_files(
        files=[{"name": "hello.txt", "mimeType": "text/plain", "buffer": b"hello from the browser\n"}])
    expect(page.get_by_role("status").filter(has_text="Uploaded")).to_have_text("Uploaded hello.txt")
    page.get_by_role("button", name="Open hello.txt").click()
    expect(page.get_by_label("Contents of hello.txt")).to_have_text("hello from the browser\n")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download hello.txt").click()
    assert Path(download.value.path()).read_bytes() == b"hello from the browser\n"
    screenshot(page, "files")
    page.get_by_role("button", name="Delete hello.txt").click()
    expect(page.locator('tr[data-file="hello.txt"]')).to_have_count(0)
    expect(page.get_by_text("Empty directory.")).to_be_visible()


def test_activity_shows_events_live_and_the_audit_log(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_role("link", name="Activity").click()
    expect(page.get_by_role("heading", name="Live events")).to_be_visible()
    page.wait_for_timeout(1000)  # the stream is open (its `connected` comes first)
    with shipped.client() as api:  # a change made elsewhere (an SDK) shows up here
        capsule_id = api.post("/v1/capsules", json={"memory_mb": 256}).json()["id"]
    live = page.locator('tr[data-event="capsule.create"]').filter(has_text=capsule_id)
    expect(live).to_have_count(1, timeout=START_S)
    screenshot(page, "activity")

    page.reload()
    page.get_by_label("Filter the audit log").fill(capsule_id)
    expect(page.locator("tr[data-audit]").filter(has_text=capsule_id).first).to_be_visible()
    page.get_by_label("Filter the audit log").fill("no-such-thing-at-all")
    expect(page.locator("tr[data-audit]")).to_have_count(0)
