"""The middlewares that keep the API to its own page and host: a request from another site may
not make the server work (``SameOrigin``), and on a loopback address only the loopback names
reach it (``HostCheck``), so a page elsewhere cannot reach the API through DNS rebinding."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

__all__ = ["HostCheck", "SameOrigin", "install_security", "is_loopback_host"]


def install_security(app: FastAPI, allowed_hosts: Iterable[str] | None) -> None:
    """Add the middlewares to ``app``.

    Parameters
    ----------
    app : fastapi.FastAPI
        The app.
    allowed_hosts : iterable of str or None
        The Host header names accepted (None: any).
    """
    app.add_middleware(SameOrigin)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed={h.lower().strip("[]") for h in allowed_hosts})


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is this machine's
    loopback: ``localhost``, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HostCheck:
    """ASGI middleware: refuse requests whose Host header is not one of ``allowed`` (JSON 400).

    Parameters
    ----------
    app : ASGI application
        The app behind it.
    allowed : set of str
        Host names, lower case, IPv6 addresses without brackets.
    """

    def __init__(self, app, *, allowed: set[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = host[1:host.find("]")] if host.startswith("[") else host.split(":")[0]
            if name.lower() not in self.allowed:
                return await _refuse(scope, receive, send, 400, f"host {host!r} is not served "
                                     f"here; use one of: {', '.join(sorted(self.allowed))}")
        await self.app(scope, receive, send)


class SameOrigin:
    """ASGI middleware: refuse (JSON 403) a request that changes or costs something when a
    browser says it comes from another site.

    Any method but GET, HEAD and OPTIONS is refused with an ``Origin`` that is not this
    server's own, or with ``Sec-Fetch-Site: cross-site``. A page elsewhere could otherwise make
    the server render, embed uploads or send OSC with a plain form or a no-cors fetch (it
    cannot read the answers, but the work is done). Clients that are not browsers send neither
    header and are not affected.

    Parameters
    ----------
    app : ASGI application
        The app behind it.
    """

    SAFE = {"GET", "HEAD", "OPTIONS"}

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in self.SAFE:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            host = headers.get("host", "").lower()
            own = f"{scope.get('scheme', 'http')}://{host}"
            # the host and port decide (a TLS proxy in front may change the scheme)
            if (origin is not None and urlsplit(origin.lower()).netloc != host) or \
                    headers.get("sec-fetch-site") == "cross-site":
                return await _refuse(scope, receive, send, 403, f"{scope['method']} from another "
                                     f"site ({origin or 'cross-site'}) is refused; use the page "
                                     f"served at {own}/")
        await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    """Answer from a middleware with the app's JSON error."""
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
