"""What the project's two servers (`serve` and the control helper) share: binding the listening
address with a clear error, and the bearer-token check."""

from __future__ import annotations

import hmac

from aiohttp import web

from probe.config import CannotListen


async def listen(site: web.TCPSite) -> None:
    """Start the site; CannotListen (with the reason) where the address cannot be bound."""
    try:
        await site.start()
    except OSError as exc:
        raise CannotListen(exc.strerror or str(exc)) from None


def authorised(request: web.Request, token: str | None) -> bool:
    """No token set, or the request carries it as a bearer token (compared in constant time)."""
    if not token:
        return True
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())
