"""The console's pages as a person uses them, in headless Chromium against the shipped server."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from ..e2e.conftest import Shipped
from .conftest import emailed_link, log_in, new_address, screenshot

pytestmark = pytest.mark.root  # capsules need root, like tests/e2e

PASSWORD = "console-passw0rd"


def test_sign_up_activate_through_the_email_link_log_out_and_in(page: Page, shipped: Shipped) -> None:
    address = new_address()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to Wrenn")).to_be_visible()  # no session: log in first
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Name").fill("Ada Console")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "signup")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("status")).to_contain_text("Check your email")

    page.goto(emailed_link(shipped, address))
    page.get_by_role("button", name="Activate my account").click()
    expect(page.get_by_role("heading", name="Capsules")).to_be_visible()
    expect(page.get_by_text(address)).to_be_visible()
    assert "token=" not in page.url

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Wrenn")).to_be_visible()
    page.goto("/#/keys")  # the session is gone: back to log in, and to the keys after it
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("invalid email or password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    screenshot(page, "login-then-keys")


def test_a_used_activation_link_is_refused_with_its_message(page: Page, shipped: Shipped) -> None:
    page.goto("/activate?token=not-a-token")
    page.get_by_role("button", name="Activate my account").click()
    expect(page.get_by_role("alert")).to_have_text("invalid or expired activation token")


def test_dark_scheme_and_logging_in_by_keyboard_alone(browser: Browser, shipped: Shipped) -> None:
    context = browser.new_context(base_url=shipped.url, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto("/")
        expect(page.get_by_role("heading", name="Log in to Wrenn")).to_be_visible()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 20, 25)"
        screenshot(page, "login-dark")
        page.keyboard.type(shipped.account.email)  # the email field has the focus
        page.keyboard.press("Tab")
        page.keyboard.type(shipped.account.password)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Capsules")).to_be_visible()
    finally:
        context.close()


def test_forgotten_password_through_the_email_link(page: Page, shipped: Shipped) -> None:
    address = new_address()
    with httpx.Client(base_url=shipped.url) as http:
        assert http.post("/v1/auth/signup", json={"name": "Forgetful", "email": address,
                                                  "password": PASSWORD}).status_code == 201
    page.goto(emailed_link(shipped, address))
    page.get_by_role("button", name="Activate my account").click()
    page.get_by_role("button", name="Log out").click()

    page.get_by_role("link", name="Forgotten password?").click()
    page.get_by_label("Email").fill(address)
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.get_by_role("status")).to_contain_text("reset link is on its way")
    deadline = time.monotonic() + 30
    while True:  # the email is sent after the answer
        try:
            link = emailed_link(shipped, address, "/reset-password")
            break
        except AssertionError:
            assert time.monotonic() < deadline, "no reset email"
            time.sleep(0.2)
    page.goto(link)
    page.get_by_label("New password (8 characters or more)").fill("a-new-passw0rd")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Log in to Wrenn")).to_be_visible()
    log_in(page, address, "a-new-passw0rd")
