"""API keys and team roles in the console."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from ..e2e.conftest import Shipped
from .conftest import emailed_link, log_in, new_address, screenshot

pytestmark = pytest.mark.root  # capsules need root, like tests/e2e

PASSWORD = "member-passw0rd"


def test_create_an_api_key_shown_once_that_works_then_delete_it(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("from-the-console")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("wrn_"), key
    screenshot(page, "api-keys")
    assert httpx.get(f"{shipped.url}/v1/capsules", headers={"X-API-Key": key}).status_code == 200  # a real key

    row = page.locator("tr[data-key]").filter(has_text="from-the-console")
    expect(row).to_have_count(1)
    expect(row).not_to_contain_text(key)  # listed by its prefix only
    row.get_by_role("button", name="Delete from-the-console").click()
    expect(row).to_have_count(0)
    assert httpx.get(f"{shipped.url}/v1/capsules", headers={"X-API-Key": key}).status_code == 401
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)  # never shown again


def _member(shipped: Shipped) -> str:
    """A signed-up, activated user (through the API and the outbox link)."""
    address = new_address()
    with httpx.Client(base_url=shipped.url) as http:
        signup = http.post("/v1/auth/signup", json={"name": "Member", "email": address, "password": PASSWORD})
        assert signup.status_code == 201, signup.text
        token = re.search(r"token=([^&\s]+)", emailed_link(shipped, address))
        assert token and http.post("/v1/auth/activate", json={"token": token.group(1)}).status_code == 200
    return address


def test_a_member_without_rights_sees_the_refusal(page: Page, shipped: Shipped, browser: Browser) -> None:
    member = _member(shipped)
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_role("link", name="Team").click()
    page.get_by_label("Email of a Wrenn user").fill(member)
    page.get_by_role("button", name="Add member").click()
    expect(page.locator(f'tr[data-member="{member}"]')).to_be_visible()
    expect(page.get_by_label(f"Role of {member}")).to_have_value("member")
    screenshot(page, "team")
    team_name = page.get_by_label("Team", exact=True).locator("option:checked").inner_text()

    other = browser.new_context(base_url=shipped.url)
    try:
        as_member = other.new_page()
        log_in(as_member, member, PASSWORD)
        as_member.get_by_label("Team", exact=True).select_option(label=team_name)
        expect(as_member.get_by_text(f"{member} · member")).to_be_visible()
        as_member.get_by_role("link", name="Team").click()
        as_member.get_by_label("Email of a Wrenn user").fill(shipped.account.email)
        as_member.get_by_role("button", name="Add member").click()
        expect(as_member.get_by_role("form", name="Add member").locator("xpath=..").get_by_role("alert")).to_have_text(
            re.compile("owner or admin|admin", re.I))
        screenshot(as_member, "team-member-refused")
    finally:
        other.close()


def test_a_platform_admin_deactivates_and_reactivates_a_user_and_others_are_refused(
        page: Page, shipped: Shipped, browser: Browser) -> None:
    member = _member(shipped)
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_role("link", name="Admin").click()
    row = page.locator(f'tr[data-user="{member}"]')
    expect(row).to_contain_text("active")
    row.get_by_role("button", name=f"Deactivate {member}").click()
    expect(row).to_contain_text("inactive")
    screenshot(page, "admin-users")
    with httpx.Client(base_url=shipped.url) as http:
        assert http.post("/v1/auth/login", json={"email": member, "password": PASSWORD}).status_code == 401
        row.get_by_role("button", name=f"Activate {member}").click()
        expect(row.get_by_role("button", name=f"Deactivate {member}")).to_be_visible()
        assert http.post("/v1/auth/login", json={"email": member, "password": PASSWORD}).status_code == 200

    other = browser.new_context(base_url=shipped.url)
    try:
        as_member = other.new_page()
        log_in(as_member, member, PASSWORD)
        expect(as_member.get_by_role("link", name="Admin")).to_have_count(0)
        as_member.goto("/#/admin/users")
        expect(as_member.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(as_member.get_by_role("alert")).not_to_be_empty()
    finally:
        other.close()


def test_hosts_create_with_the_token_shown_once_and_delete(page: Page, shipped: Shipped) -> None:
    log_in(page, shipped.account.email, shipped.account.password)
    page.get_by_role("link", name="Hosts").click()
    expect(page.locator("tr[data-host]").filter(has_text="online")).not_to_have_count(0)  # the embedded agent
    page.get_by_label("Provider").fill("console-test")
    page.get_by_role("button", name="Create host").click()
    token = page.locator("#registration-token").inner_text()
    assert len(token) > 16, token
    host_id = page.get_by_role("region", name="New host").locator("strong").inner_text().split()[1]
    row = page.locator(f'tr[data-host="{host_id}"]')
    expect(row).to_contain_text("pending")
    screenshot(page, "hosts")
    row.get_by_role("button", name=f"Delete {host_id}").click()  # the preview's confirm() is accepted
    expect(row).to_have_count(0)
    page.reload()
    expect(page.locator("#registration-token")).to_have_count(0)
