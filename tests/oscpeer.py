"""An OSC peer for tests: a python-osc UDP server on a free loopback port that keeps every message
it receives (tests import it as ``from oscpeer import Receiver``); ``Receiver("0.0.0.0")`` also
hears the loopback's broadcast address, 127.255.255.255."""

from __future__ import annotations

import queue
import threading

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer


class Receiver:
    """Use as a context manager; ``port`` is where it listens, ``next()`` the next message as
    (address, args), waiting up to ``timeout`` seconds (queue.Empty when none came)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.messages: queue.Queue = queue.Queue()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.put((address, args)))
        self.server = ThreadingOSCUDPServer((host, 0), dispatcher)
        self.port = self.server.server_address[1]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next(self, timeout: float = 5.0):
        return self.messages.get(timeout=timeout)

    def until(self, address: str, timeout: float = 5.0):
        """The args of the next message to ``address`` (others before it are skipped)."""
        while True:
            got, args = self.next(timeout)
            if got == address:
                return args
