"""Absolute URLs the control plane hands out: email links and OAuth redirects."""

from __future__ import annotations

from fastapi import Request

from ..settings import Settings


def public_base(request: Request, settings: Settings) -> str:
    """`public_url`, or the URL this request reached us at when it is not configured."""
    return (settings.public_url or str(request.base_url)).rstrip("/")


def spa_base(request: Request, settings: Settings) -> str:
    return settings.oauth_redirect_url.rstrip("/") or public_base(request, settings)
