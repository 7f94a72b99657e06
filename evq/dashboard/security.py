"""The action token: checked in constant time on every action."""

from __future__ import annotations

import hmac
import os
import secrets


def action_token(given: str | None) -> str:
    """``given``, else ``EVQ_DASHBOARD_TOKEN``, else a fresh random token."""
    return given or os.environ.get("EVQ_DASHBOARD_TOKEN") or secrets.token_urlsafe(24)


def token_ok(expected: str, presented: str | None) -> bool:
    """Whether ``presented`` is the token (constant-time comparison)."""
    return presented is not None and hmac.compare_digest(expected.encode(),
                                                          presented.encode())
