"""The seven providers: each one's config fields, their validation, and its real message format.

`validate(provider, config, settings)` returns the config to store (a 400 names the bad field);
`build(provider, config, payload, key, settings)` returns the HTTP request that posts one event.
`key` identifies the delivery; Matrix uses it as the transaction id, so a retried delivery is
never shown twice. Webhook deliveries are signed: `X-Wrenn-Signature: sha256=<hex>` is the
HMAC-SHA256, keyed with the channel secret, of `<X-Wrenn-Timestamp>.<body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from ..errors import bad_request
from ..settings import Settings
from .messages import Message, message

Provider = Literal["discord", "slack", "teams", "googlechat", "telegram", "matrix", "webhook"]
PROVIDERS: tuple[str, ...] = Provider.__args__  # type: ignore[attr-defined]

SIGNATURE_HEADER = "X-Wrenn-Signature"
TIMESTAMP_HEADER = "X-Wrenn-Timestamp"


@dataclass(frozen=True)
class Outgoing:
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# ---- validation ---------------------------------------------------------------------------------

_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # required, optional
    "discord": (("webhook_url",), ()),
    "slack": (("webhook_url",), ()),
    "teams": (("webhook_url",), ()),
    "googlechat": (("webhook_url",), ()),
    "telegram": (("bot_token", "chat_id"), ()),
    "matrix": (("homeserver_url", "access_token", "room_id"), ()),
    "webhook": (("url",), ("secret",)),
}
_TELEGRAM_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
_TELEGRAM_CHAT = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_MATRIX_ROOM = re.compile(r"^![^:\s]+:\S+$")


def _url_prefix(provider: str, settings: Settings) -> str:
    return {
        "discord": settings.channel_discord_url, "slack": settings.channel_slack_url,
        "teams": settings.channel_teams_url, "googlechat": settings.channel_googlechat_url,
    }.get(provider, "")


def _check_url(name: str, value: str, prefix: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise bad_request(f"config.{name}: must be an http(s) URL")
    if prefix and not value.startswith(prefix):
        raise bad_request(f"config.{name}: must start with {prefix}")
    return value


def validate(provider: str, config: dict[str, str], settings: Settings) -> dict[str, str]:
    required, optional = _FIELDS[provider]
    for name in config:
        if name not in required and name not in optional:
            raise bad_request(f"config.{name}: not a {provider} field (expected {', '.join(required + optional)})")
    clean = {name: value.strip() for name, value in config.items()}
    for name in required:
        if not clean.get(name):
            raise bad_request(f"config.{name}: required for {provider}")
    if "webhook_url" in clean:
        _check_url("webhook_url", clean["webhook_url"], _url_prefix(provider, settings))
    if provider == "webhook":
        _check_url("url", clean["url"], "")
        if "secret" in clean and len(clean["secret"]) < 16:
            raise bad_request("config.secret: at least 16 characters")
        clean.setdefault("secret", "whsec_" + secrets.token_hex(24))
    if provider == "telegram":
        if not _TELEGRAM_TOKEN.match(clean["bot_token"]):
            raise bad_request("config.bot_token: not a Telegram bot token (<id>:<secret>)")
        if not _TELEGRAM_CHAT.match(clean["chat_id"]):
            raise bad_request("config.chat_id: a numeric chat id or @channelusername")
    if provider == "matrix":
        clean["homeserver_url"] = _check_url("homeserver_url", clean["homeserver_url"], "").rstrip("/")
        if not _MATRIX_ROOM.match(clean["room_id"]):
            raise bad_request("config.room_id: a room id like !abc123:example.org")
    return clean


# ---- message formats ----------------------------------------------------------------------------


def _json(method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> Outgoing:
    data = json.dumps(body, separators=(",", ":")).encode()
    return Outgoing(method, url, data, {"Content-Type": "application/json", **(headers or {})})


def _discord(config: dict[str, str], msg: Message, _: dict[str, Any], __: str, ___: Settings) -> Outgoing:
    embed: dict[str, Any] = {
        "title": msg.title[:256], "color": msg.color,
        "fields": [{"name": n[:256], "value": (v or "-")[:1024], "inline": True} for n, v in msg.facts[:25]],
    }
    if msg.timestamp:
        embed["timestamp"] = msg.timestamp
    return _json("POST", config["webhook_url"], {"username": "Wrenn", "content": msg.title[:2000], "embeds": [embed]})


def _slack(config: dict[str, str], msg: Message, _: dict[str, Any], __: str, ___: Settings) -> Outgoing:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": msg.title[:150]}}]
    if msg.facts:
        blocks.append({"type": "section",
                       "fields": [{"type": "mrkdwn", "text": f"*{n}*\n{v}"[:2000]} for n, v in msg.facts[:10]]})
    if msg.timestamp:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": msg.timestamp}]})
    return _json("POST", config["webhook_url"], {"text": msg.text(), "blocks": blocks})


def _teams(config: dict[str, str], msg: Message, _: dict[str, Any], __: str, ___: Settings) -> Outgoing:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": msg.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "FactSet", "facts": [{"title": n, "value": v} for n, v in msg.facts]},
        ],
    }
    body = {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    return _json("POST", config["webhook_url"], body)


def _googlechat(config: dict[str, str], msg: Message, _: dict[str, Any], __: str, ___: Settings) -> Outgoing:
    out = _json("POST", config["webhook_url"], {"text": msg.text()})
    return Outgoing(out.method, out.url, out.body, {"Content-Type": "application/json; charset=UTF-8"})


def _telegram(config: dict[str, str], msg: Message, _: dict[str, Any], __: str, settings: Settings) -> Outgoing:
    url = f"{settings.channel_telegram_url.rstrip('/')}/bot{config['bot_token']}/sendMessage"
    return _json("POST", url, {"chat_id": config["chat_id"], "text": msg.html(), "parse_mode": "HTML",
                               "disable_web_page_preview": True})


def _matrix(config: dict[str, str], msg: Message, _: dict[str, Any], key: str, __: Settings) -> Outgoing:
    room = quote(config["room_id"], safe="")
    url = f"{config['homeserver_url']}/_matrix/client/v3/rooms/{room}/send/m.room.message/{quote(key, safe='')}"
    body = {"msgtype": "m.text", "body": msg.text(), "format": "org.matrix.custom.html",
            "formatted_body": msg.html().replace("\n", "<br>")}
    return _json("PUT", url, body, {"Authorization": f"Bearer {config['access_token']}"})


def _webhook(config: dict[str, str], _: Message, payload: dict[str, Any], key: str, __: Settings) -> Outgoing:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json", "User-Agent": "Wrenn-Webhook/1",
        "X-Wrenn-Event": str(payload.get("event", "")), "X-Wrenn-Delivery": key,
        TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(config["secret"], timestamp, body),
    }
    return Outgoing("POST", config["url"], body, headers)


_BUILDERS: dict[str, Callable[[dict[str, str], Message, dict[str, Any], str, Settings], Outgoing]] = {
    "discord": _discord, "slack": _slack, "teams": _teams, "googlechat": _googlechat,
    "telegram": _telegram, "matrix": _matrix, "webhook": _webhook,
}


def build(provider: str, config: dict[str, str], payload: dict[str, Any], key: str, settings: Settings) -> Outgoing:
    return _BUILDERS[provider](config, message(payload), payload, key, settings)
