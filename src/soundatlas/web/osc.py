"""Live control over OSC (Open Sound Control, over UDP, with python-osc).

Out (``soundatlas serve --osc-out HOST:PORT``; HOST may be a broadcast address): what the
page does goes out as messages, each sample named by its id, its path relative to the library
and its coordinates on the map shown::

    /soundatlas/hover     ,is f...   id path x y z     the pointer moved onto a sample
    /soundatlas/select    ,is f...   id path x y z     a sample was clicked (selected)
    /soundatlas/play      ,is f...   id path x y z     a sample started playing
    /soundatlas/selection ,i i...    n id1 ... idn     the box/lasso selection changed (first 1024)

In (``--osc-in [HOST:]PORT``, host 127.0.0.1 unless given): messages move a cursor in the page
and trigger the nearest sample::

    /soundatlas/cursor       x y z     a point in the coordinates of the map shown
    /soundatlas/cursor/norm  u v w     a point in [0, 1] per axis of the map's bounding box
                                        (for faders and XY pads)
    /soundatlas/play         id        play sample id
    /soundatlas/select       id        select sample id (as a click does)

Incoming messages reach every open page through ``GET /api/events/stream`` (server-sent events);
a message that does not fit the address space is answered on the stream as an ``error`` event
naming what was wrong, and the server goes on.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import threading
from dataclasses import dataclass

from soundatlas.errors import ParameterError
from soundatlas.text import shown as printable

__all__ = ["PREFIX", "MAX_SELECTION", "Endpoint", "parse_endpoint", "EventHub", "OscOut", "OscIn"]

PREFIX = "/soundatlas"
MAX_SELECTION = 1024  # ids in one /selection message (a UDP datagram stays well under 64 KiB)
SAMPLE_EVENTS = ("hover", "select", "play")
MAX_ID = 2**31 - 1  # sample ids are OSC int32 (an atlas's ids are SQLite rowids from 1)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, *, what: str, default_host: str | None = None,
                   allow_zero: bool = False) -> Endpoint:
    """``HOST:PORT`` (or ``PORT`` alone when ``default_host`` is given; ``[::1]:PORT`` for IPv6)
    as an :class:`Endpoint`; a clear ParameterError naming ``what`` otherwise."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = (default_host or ""), text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        need = "HOST:PORT" if default_host is None else "[HOST:]PORT"
        raise ParameterError(f"{what} {text!r}: give {need}, e.g. 127.0.0.1:9000")
    if not port.isdigit() or not (0 if allow_zero else 1) <= int(port) <= 65535:
        raise ParameterError(f"{what} {text!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port))


class EventHub:
    """Events from any thread to every subscriber (an asyncio queue on its own loop)."""

    def __init__(self, max_queued: int = 256):
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.n_published = 0

    def subscribe(self) -> asyncio.Queue:
        """A new queue that gets every event published from now on (call on the event loop).

        Returns
        -------
        asyncio.Queue
            Bounded by ``max_queued``; ``unsubscribe`` it when done.
        """
        queue: asyncio.Queue = asyncio.Queue(self.max_queued)
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        """Stop handing events to ``queue`` (from ``subscribe``); unknown queues are ignored."""
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]

    @property
    def n_subscribers(self) -> int:
        """How many queues are subscribed now."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: dict) -> None:
        """Hand ``event`` to every subscriber; a subscriber too slow to keep up loses events
        rather than holding the sender up."""
        with self._lock:
            subscribers = list(self._subscribers)
            self.n_published += 1
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # its loop is closed: the page went away
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue, event: dict) -> None:
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        pass


class OscOut:
    """Sends the page's events as OSC messages to one UDP endpoint."""

    def __init__(self, endpoint: Endpoint):
        from pythonosc.udp_client import SimpleUDPClient

        self.endpoint = endpoint
        try:
            family = _family(endpoint.host)
            # a broadcast address (a LAN's x.x.x.255, several listeners at once) needs
            # SO_BROADCAST, without which every send is refused with "Permission denied"
            self.client = SimpleUDPClient(endpoint.host, endpoint.port, family=family,
                                          allow_broadcast=family == socket.AF_INET)
        except OSError as exc:
            raise ParameterError(f"--osc-out {endpoint}: {exc.strerror or exc}") from None
        self.n_sent = 0

    def send(self, address: str, args: list) -> None:
        """Send one OSC message to the endpoint.

        Parameters
        ----------
        address : str
            The OSC address, e.g. ``/soundatlas/hover``.
        args : list
            Its arguments (int, float or str each).
        """
        self.client.send_message(address, args)
        self.n_sent += 1


def _family(host: str):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class OscIn:
    """A UDP OSC server in a thread: each message of the address space above becomes an event
    on ``hub``; anything else becomes an ``error`` event naming what was wrong.

    The port is bound at once (a port in use is an error now, not when serving starts); one
    thread handles the messages in the order they arrive (a controller's last position is the
    one that stays). ``start`` after ``stop`` listens again on the same port."""

    def __init__(self, endpoint: Endpoint, hub: EventHub):
        from pythonosc import osc_packet
        from pythonosc.dispatcher import Dispatcher

        self.hub = hub
        self.n_received = 0
        errors = self._error

        class Checked(Dispatcher):
            """python-osc drops a packet it cannot parse without a word, and lets a string
            that is not UTF-8 raise out of the server's thread: both become an error event
            naming the sender and the reason."""

            def call_handlers_for_packet(self, data, client_address):
                try:
                    osc_packet.OscPacket(data)
                except (osc_packet.ParseError, UnicodeDecodeError, ValueError) as exc:
                    host, port = client_address[:2]
                    errors(f"(a packet of {len(data)} bytes from {host}:{port})", (),
                           f"is not an OSC message ({type(exc).__name__}: {exc})")
                    return []  # no replies: the server iterates what this returns
                return super().call_handlers_for_packet(data, client_address)

        # A bundle's time tag is not waited for: its messages act on arrival. python-osc would
        # sleep on the one handler thread until then (a sender chooses how long), holding every
        # later message and the server's shutdown.
        self.dispatcher = Checked(strict_timing=False)
        self.dispatcher.map(f"{PREFIX}/cursor", self._cursor, "point")
        self.dispatcher.map(f"{PREFIX}/cursor/norm", self._cursor, "norm")
        self.dispatcher.map(f"{PREFIX}/play", self._sample, "play")
        self.dispatcher.map(f"{PREFIX}/select", self._sample, "select")
        self.dispatcher.set_default_handler(self._unknown)
        self.server = self._bind(endpoint)
        self.endpoint = Endpoint(endpoint.host, self.server.server_address[1])
        self.thread: threading.Thread | None = None

    def _bind(self, endpoint: Endpoint):
        from pythonosc.osc_server import BlockingOSCUDPServer

        class Server(BlockingOSCUDPServer):
            # the largest UDP payload: socketserver reads 8,192 bytes, and a longer packet
            # was cut and then named as malformed at the wrong size
            max_packet_size = 65535

            def verify_request(self, request, client_address):
                return True  # every datagram reaches Checked, which names what is not OSC

        try:
            return Server((endpoint.host, endpoint.port), self.dispatcher)
        except OSError as exc:
            raise ParameterError(f"--osc-in {endpoint}: cannot listen there: "
                                 f"{exc.strerror or exc}") from None

    def start(self) -> "OscIn":
        """Listen (binding the endpoint if not yet) on a daemon thread; returns ``self``."""
        if self.server is None:
            self.server = self._bind(self.endpoint)
        self.thread = threading.Thread(target=self.server.serve_forever, name="osc-in",
                                       kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the socket (waits up to 5 s for the thread); idempotent."""
        if self.server is None:
            return
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()
        self.server, self.thread = None, None

    # -- handlers (called on the server's thread) ----------------------------------------------

    def _cursor(self, address: str, kind: list, *args) -> None:
        self.n_received += 1
        kind = kind[0]
        if not 1 <= len(args) <= 16 or not all(_number(a) for a in args):
            return self._error(address, args, "expects 1 to 16 numbers (x y z)")
        values = [float(a) for a in args]
        if kind == "norm" and not all(0.0 <= v <= 1.0 for v in values):
            return self._error(address, args, "expects numbers from 0 to 1")
        self.hub.publish({"type": "cursor", kind: values, "address": address})

    def _sample(self, address: str, kind: list, *args) -> None:
        self.n_received += 1
        if len(args) != 1 or not isinstance(args[0], int) or isinstance(args[0], bool) \
                or not 0 <= args[0] <= MAX_ID:  # an int64 ('h') the page could not hold exactly
            return self._error(address, args, f"expects one integer sample id (0 to {MAX_ID})")
        self.hub.publish({"type": kind[0], "id": int(args[0]), "address": address})

    def _unknown(self, address: str, *args) -> None:
        self.n_received += 1
        self._error(address, args, f"is not an address of soundatlas (known: {PREFIX}/cursor, "
                    f"{PREFIX}/cursor/norm, {PREFIX}/play, {PREFIX}/select)")

    def _error(self, address: str, args, why: str) -> None:
        shown = " ".join(repr(a) for a in args)[:200]
        # the address as the terminal may show it (a sender chooses it: no escape sequences)
        message = f"OSC {printable(address)} {shown}: {why}".replace("  ", " ")
        print(f"soundatlas serve: {message}", file=sys.stderr)
        self.hub.publish({"type": "error", "message": message})


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sse(event: dict) -> bytes:
    """One server-sent event carrying ``event`` as JSON."""
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
