"""One HTTP request to the app in this process, without a server: what ``soundatlas serve
--get`` sends, and what tests and benchmarks use to send a path exactly as given."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["call", "describe_response"]


async def call(app, method: str, target: str, *, headers: Iterable[tuple[str, str]] = (),
               body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP request to an ASGI app in this process.

    ``target`` is sent as a client would put it on the wire (path and query, percent-encoding
    and dot segments kept as given), so this also exercises paths an HTTP library would clean.

    Parameters
    ----------
    app : ASGI application
        The app (``create_app``'s, say).
    method : str
        The HTTP method.
    target : str
        Path and query, e.g. ``/api/samples?q=kick``.
    headers : iterable of (str, str), optional
        Request headers; ``Host: 127.0.0.1`` unless one is given.
    body : bytes, optional
        The request body.

    Returns
    -------
    (int, dict, bytes)
        The status, the response headers (lower-case names) and the body.
    """
    path, _, query = target.partition("?")
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k == b"host" for k, _ in raw_headers):
        raw_headers.insert(0, (b"host", b"127.0.0.1"))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method.upper(), "scheme": "http", "path": unquote(path),
        "raw_path": path.encode("utf-8"), "query_string": query.encode("utf-8"), "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 80), "extensions": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status, out_headers, chunks = 500, {}, []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected until the app is done

    async def send(message):
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = {k.decode("latin-1"): v.decode("latin-1")
                           for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)


def describe_response(status: int, headers: dict[str, str], body: bytes) -> str:
    """What ``soundatlas serve --get`` prints of a response.

    Parameters
    ----------
    status : int
        The HTTP status.
    headers : dict
        The response headers, lower-case names.
    body : bytes
        The body.

    Returns
    -------
    str
        JSON pretty-printed, text as it is, anything else in one line: status, size and the
        headers that describe it.
    """
    ctype = headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            return json.dumps(json.loads(body), indent=2)
        except ValueError:
            pass
    if ctype.startswith("text/"):
        return body.decode("utf-8", errors="replace")
    wanted = ("content-type", "content-range", "content-disposition")
    shown = {k: v for k, v in headers.items()
             if (k.startswith("x-") and k != "x-content-type-options") or k in wanted}
    listed = "; ".join(f"{k}: {v}" for k, v in sorted(shown.items()))
    return f"{status} {len(body)} bytes; {listed}"
