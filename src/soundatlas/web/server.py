"""Serve an app on a loopback port from a thread: for notebooks, tests and benchmarks, where
``soundatlas serve`` (which owns the process) does not fit."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

from soundatlas.web.state import end_streams

__all__ = ["ThreadedServer"]


class ThreadedServer:
    """uvicorn serving an app on a free port of 127.0.0.1, in a daemon thread, with the app's
    startup and shutdown (lifespan) run.

    Use as a context manager; ``url`` is where it answers. ``request``, ``get`` and ``post``
    are a small client for it (urllib, no extra dependency).

    Parameters
    ----------
    app : ASGI application
        The app (``create_app``'s, say).
    graceful_s : float, optional
        Seconds open responses get to finish when the server stops.

    Attributes
    ----------
    port : int
        The port the system chose.
    url : str
        ``http://127.0.0.1:PORT``.
    """

    def __init__(self, app, *, graceful_s: float = 2.0):
        import uvicorn

        # an explicit TCP socket: asyncio then turns Nagle off on its connections (with a bare
        # socket.socket() every kept-alive request after the first waited ~40 ms)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=graceful_s)
        self.app = app
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        end_streams(self.app)  # open event streams end now, not after the graceful timeout
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def request(self, path: str, *, body: dict | None = None,
                timeout: float = 30) -> tuple[dict, bytes]:
        """GET ``path``, or POST the JSON ``body`` to it.

        Parameters
        ----------
        path : str
            Path and query, from ``/``.
        body : dict, optional
            Sent as JSON with POST; None sends GET.
        timeout : float, optional
            Seconds to wait for the answer.

        Returns
        -------
        (dict, bytes)
            The response headers (lower-case names) and body.

        Raises
        ------
        urllib.error.HTTPError
            For a status of 400 or more.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return {k.lower(): v for k, v in r.headers.items()}, r.read()

    def get(self, path: str):
        """The JSON answer of GET ``path``."""
        return json.loads(self.request(path)[1])

    def post(self, path: str, body: dict):
        """The JSON answer of POST ``body`` (as JSON) to ``path``."""
        return json.loads(self.request(path, body=body)[1])
