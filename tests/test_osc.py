"""Live control over OSC: real UDP sockets both ways (python-osc), a real uvicorn server for the
event stream, on a small rendered library mapped with the shipped model."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from oscpeer import Receiver
from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError
from soundatlas.web import create_app
from soundatlas.web.osc import Endpoint, parse_endpoint
from soundatlas.web.server import ThreadedServer

CLASSES = {"flute": (73, 60, 63), "tuba": (58, 36, 39)}  # 4 pitches each, short and long: 16
BIN = Path(sys.executable).parent / "soundatlas"


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory) -> Path:
    from conftest import map_with_shipped_model

    return map_with_shipped_model(tmp_path_factory.mktemp("osc") / "lib", CLASSES)


@pytest.fixture(scope="module")
def points(atlas_dir) -> dict[int, np.ndarray]:
    with Atlas.open(atlas_dir) as atlas:
        ids, pts = atlas.points(atlas.model("default").id)
        return {int(i): p for i, p in zip(ids, pts)}


def _client(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


class EventStream:
    """``GET /api/events/stream`` read event by event on a thread of its own.

    ``next`` waits for the next event (``queue.Empty`` past ``timeout``); once the stream is over
    it raises ``EOFError``, or the error that ended the reading.
    """

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/api/events/stream")
        self.sock = self.conn.sock  # kept: close() shuts it, which ends the reader's readline
        self.response = self.conn.getresponse()
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while line := self.response.readline():  # chunk by chunk: a cut stream raises
                if line.startswith(b"data: "):
                    self.events.put(json.loads(line[6:]))
            self.events.put(EOFError("the stream ended"))
        except Exception as exc:  # noqa: BLE001 -- handed to the reader
            self.events.put(exc)

    def next(self, timeout: float = 10.0) -> dict:
        item = self.events.get(timeout=timeout)
        if isinstance(item, BaseException):
            self.events.put(item)  # the end stays the end
            raise item
        return item

    def close(self):
        # shut the connection down, not only close our handle: the reader thread's file object
        # keeps the socket open otherwise, and the server waits for the stream to drain
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the server
        self.conn.close()


# -- the address strings ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, default, want", [
    ("127.0.0.1:9000", None, Endpoint("127.0.0.1", 9000)),
    ("localhost:57120", None, Endpoint("localhost", 57120)),
    ("[::1]:9000", None, Endpoint("::1", 9000)),
    ("9001", "127.0.0.1", Endpoint("127.0.0.1", 9001)),
    ("0.0.0.0:9001", "127.0.0.1", Endpoint("0.0.0.0", 9001)),
])
def test_endpoints_parse(text, default, want):
    assert parse_endpoint(text, what="--osc", default_host=default) == want


@pytest.mark.parametrize("text, default, words", [
    ("9000", None, "give HOST:PORT"),
    ("host:", None, "port must be a number"),
    ("host:70000", None, "port must be a number"),
    ("host:0", None, "port must be a number"),
    (":9000", None, "give HOST:PORT"),
    ("abc", "127.0.0.1", "port must be a number"),
])
def test_bad_endpoints_say_what_is_wrong(text, default, words):
    with pytest.raises(ParameterError, match=words) as info:
        parse_endpoint(text, what="--osc-out", default_host=default)
    assert "--osc-out" in str(info.value) and repr(text) in str(info.value)


# -- out: the page's events as OSC -----------------------------------------------------------------


def test_page_events_go_out_as_osc_with_path_and_coordinates(atlas_dir, points):
    with Atlas.open(atlas_dir) as atlas:
        records = atlas.samples()
    with Receiver() as rx:
        client = _client(create_app(atlas_dir, osc_out=f"127.0.0.1:{rx.port}"))
        assert client.get("/api/atlas").json()["osc"] == {"out": f"127.0.0.1:{rx.port}",
                                                         "in": None}
        for kind, rec in (("hover", records[3]), ("select", records[7]), ("play", records[3])):
            r = client.post("/api/events", json={"type": kind, "id": rec.id, "model": "default"})
            assert r.status_code == 200, r.text
            address, args = rx.next()
            assert address == f"/soundatlas/{kind}" == r.json()["sent"]
            assert args[0] == rec.id and args[1] == rec.path
            np.testing.assert_allclose(args[2:], points[rec.id], rtol=1e-6)  # OSC floats: f32
        ids = [r.id for r in records[:5]]
        r = client.post("/api/events", json={"type": "selection", "ids": ids[::-1] + ids[:1]})
        assert r.status_code == 200
        assert rx.next() == ("/soundatlas/selection", tuple([5, *ids[::-1]]))  # each id once
        r = client.post("/api/events", json={"type": "selection", "ids": ids[:2], "count": 4000})
        assert rx.next() == ("/soundatlas/selection", (4000, *ids[:2]))  # a big selection's head


@pytest.mark.parametrize("body, status, words", [
    ({"type": "hover", "id": 99999, "model": "default"}, 404, "no sample with id 99999"),
    ({"type": "hover", "id": 1, "model": "nope"}, 404, "no model 'nope'"),
    ({"type": "play", "id": 1}, 400, "needs 'id' and 'model'"),
    ({"type": "selection"}, 400, "needs 'ids'"),
    ({"type": "dance", "id": 1}, 422, "type"),
    ({"type": "play", "id": 2**70, "model": "default"}, 422, "id"),
    ({"type": "selection", "ids": [1, 2**40]}, 422, "ids"),
    ({"type": "selection", "ids": list(range(1025))}, 422, "ids"),
    ({"type": "selection", "ids": [1, 2, 3, 2], "count": 2}, 400, "count=2 is fewer than the 3"),
    ({"type": "selection", "ids": [1, 2], "count": 2**31}, 422, "count"),  # not int64 ('h')
    ({"type": "selection", "ids": [1, 2], "count": 2**63}, 422, "count"),
    ({"type": "hover", "id": True, "model": "default"}, 422, "id"),  # not sample 1
])
def test_bad_page_events_are_refused_and_nothing_is_sent(atlas_dir, body, status, words):
    with Receiver() as rx:
        client = _client(create_app(atlas_dir, osc_out=f"127.0.0.1:{rx.port}"))
        app = client.app
        r = client.post("/api/events", json=body)
        assert r.status_code == status and words in r.json()["error"], r.text
        assert app.state.web.osc_out.n_sent == 0  # the answer comes after any send
        r = client.post("/api/events", json={"type": "play", "id": 1, "model": "default"})
        assert r.status_code == 200 and rx.next()[0] == "/soundatlas/play"  # the first to arrive


def test_page_events_reach_a_broadcast_address(atlas_dir):
    """A LAN's broadcast address (here the loopback's) reaches every listener on that port; the
    socket needs SO_BROADCAST, without which each send was refused ("Permission denied")."""
    with Receiver("0.0.0.0") as rx:
        client = _client(create_app(atlas_dir, osc_out=f"127.255.255.255:{rx.port}"))
        r = client.post("/api/events", json={"type": "play", "id": 2, "model": "default"})
        assert r.status_code == 200, r.text
        address, args = rx.next()
        assert (address, args[0]) == ("/soundatlas/play", 2)


def test_without_osc_the_event_endpoints_say_how_to_turn_it_on(atlas_dir):
    client = _client(create_app(atlas_dir))
    assert client.get("/api/atlas").json()["osc"] == {"out": None, "in": None}
    r = client.post("/api/events", json={"type": "hover", "id": 1, "model": "default"})
    assert r.status_code == 409 and "--osc-out HOST:PORT" in r.json()["error"]
    r = client.get("/api/events/stream")
    assert r.status_code == 409 and "--osc-in PORT" in r.json()["error"]


# -- in: OSC to the page's event stream ------------------------------------------------------------


def test_incoming_osc_reaches_the_event_stream_and_bad_messages_are_named(atlas_dir):
    app = create_app(atlas_dir, osc_in="127.0.0.1:0")
    port = app.state.web.osc_in.endpoint.port
    assert port > 0
    with ThreadedServer(app) as server:
        assert server.get("/api/atlas")["osc"]["in"] == f"127.0.0.1:{port}"
        stream = EventStream(server.port)
        try:
            assert stream.next() == {"type": "hello", "osc_in": f"127.0.0.1:{port}"}
            osc = SimpleUDPClient("127.0.0.1", port)
            osc.send_message("/soundatlas/cursor", [0.25, -0.5, 1.0])
            assert stream.next() == {"type": "cursor", "point": [0.25, -0.5, 1.0],
                                     "address": "/soundatlas/cursor"}
            osc.send_message("/soundatlas/cursor/norm", [0.0, 0.5, 1.0])
            assert stream.next()["norm"] == [0.0, 0.5, 1.0]
            osc.send_message("/soundatlas/play", 5)
            assert stream.next() == {"type": "play", "id": 5, "address": "/soundatlas/play"}
            osc.send_message("/soundatlas/select", 7)
            assert stream.next()["type"] == "select"
            for address, args, words in [
                ("/soundatlas/cursor/norm", [1.5, 0.0], "from 0 to 1"),
                ("/soundatlas/cursor", ["x"], "expects 1 to 16 numbers"),
                ("/soundatlas/play", [1.5], "one integer sample id"),
                ("/soundatlas/play", [-1], "one integer sample id (0 to 2147483647)"),
                ("/soundatlas/select", [2**40], "(0 to 2147483647)"),  # (python-osc: int64)
                ("/soundatlas/jump", [1], "is not an address of soundatlas"),
            ]:
                osc.send_message(address, args)
                event = stream.next()
                assert event["type"] == "error" and address in event["message"]
                assert words in event["message"]
            osc.send_message("/soundatlas/play", 3)  # and it goes on
            assert stream.next()["id"] == 3
        finally:
            stream.close()
    # stopped with the app: the port is free again
    again = ThreadingOSCUDPServer(("127.0.0.1", port), Dispatcher())
    again.server_close()


@contextlib.contextmanager
def _listening(atlas_dir):
    """A served app with ``--osc-in`` on a free port: its event stream, past the hello, and
    that port."""
    app = create_app(atlas_dir, osc_in="127.0.0.1:0")
    port = app.state.web.osc_in.endpoint.port
    with ThreadedServer(app) as server:
        stream = EventStream(server.port)
        try:
            assert stream.next()["type"] == "hello"
            yield stream, port
        finally:
            stream.close()


def test_a_malformed_packet_is_named_on_the_stream_without_a_traceback(atlas_dir, capfd):
    """A datagram that is not OSC becomes one error event and one line on stderr (not the
    socket server's traceback), and the next good message is handled."""
    with _listening(atlas_dir) as (stream, port):
        play = b"/soundatlas/play\0\0\0\0,i\0\0"  # address and type tag: 24 bytes
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(play, ("127.0.0.1", port))  # an int promised and cut off
            event = stream.next()
            assert event["type"] == "error" and "is not an OSC message" in event["message"]
            assert "a packet of 24 bytes" in event["message"]
            raw.sendto(play + (6).to_bytes(4, "big"), ("127.0.0.1", port))
            assert stream.next() == {"type": "play", "id": 6, "address": "/soundatlas/play"}
    err = capfd.readouterr().err
    assert "is not an OSC message" in err
    assert "Traceback" not in err and "Exception occurred during processing" not in err, err


def test_a_bundle_timed_far_ahead_acts_at_once_and_holds_nothing_up(atlas_dir, capfd):
    """A bundle whose time tag is an hour ahead: its message acts on arrival (python-osc slept
    the one handler thread until then, so every later message, and the server's stop, waited
    on it). A datagram that is not OSC at all, a packet longer than 8 KiB and an address with
    an escape sequence are each named as they are."""
    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    with _listening(atlas_dir) as (stream, port):
        bundle = OscBundleBuilder(time.time() + 3600)
        play = OscMessageBuilder("/soundatlas/play")
        play.add_arg(4)
        bundle.add_content(play.build())
        osc = SimpleUDPClient("127.0.0.1", port)
        osc.send(bundle.build())
        assert stream.next() == {"type": "play", "id": 4, "address": "/soundatlas/play"}
        osc.send_message("/soundatlas/select", 9)
        assert stream.next()["id"] == 9
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\xff\xfe garbage", ("127.0.0.1", port))
            event = stream.next()
            assert event["type"] == "error" and "a packet of 10 bytes" in event["message"]
        big = OscMessageBuilder("/soundatlas/select")
        big.add_arg(b"x" * 60_000)
        osc.send(big.build())
        event = stream.next()
        assert event["type"] == "error" and "expects one integer sample id" in event["message"]
        osc.send_message("/soundatlas/\x1b[31mred", 1)
        event = stream.next()
        assert "/soundatlas/\\x1b[31mred" in event["message"] and "\x1b" not in event["message"]
    err = capfd.readouterr().err
    assert "\x1b" not in err


def test_serve_refuses_bad_osc_addresses_in_one_line(atlas_dir):
    busy = ThreadingOSCUDPServer(("127.0.0.1", 0), Dispatcher())  # a port someone else holds
    taken = busy.server_address[1]
    try:
        for flag, value, words in [("--osc-out", "9000", "give HOST:PORT"),
                                   ("--osc-in", "notaport", "port must be a number"),
                                   ("--osc-in", str(taken), "cannot listen there")]:
            proc = subprocess.run([str(BIN), "serve", "--atlas", str(atlas_dir), flag, value,
                                   "--port", "0"], capture_output=True, text=True, timeout=60,
                                  env={"CI": "1", "PATH": "/usr/bin:/bin"})
            assert proc.returncode != 0
            assert words in proc.stderr and value in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr
    finally:
        busy.server_close()


def test_ctrl_c_stops_serve_promptly_with_a_page_listening(atlas_dir):
    """Ctrl-C ends the page's open event stream at once (uvicorn does not have to cut it when its
    graceful-shutdown time is up) and serve exits cleanly."""
    import signal

    proc, http_port, osc_port = _serve_with_osc_in(atlas_dir)
    try:
        stream = EventStream(http_port)
        assert stream.next()["type"] == "hello"
        SimpleUDPClient("127.0.0.1", osc_port).send_message("/soundatlas/play", 2)
        assert stream.next()["id"] == 2
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        # uvicorn waits for open responses, then cuts them and says so: the stream was ended first
        assert "graceful shutdown exceeded" not in err, "the open stream held the server up"
        with pytest.raises(EOFError):
            stream.next()
        assert proc.returncode == 0, err
        assert f"OSC in: listening on 127.0.0.1:{osc_port}" in out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _serve_with_osc_in(atlas_dir: Path, attempts: int = 5) -> tuple[subprocess.Popen, int, int]:
    """``soundatlas serve --port 0 --osc-in PORT``: (the process, the HTTP port it printed, the
    OSC port). ``--osc-in`` takes no 0, so the OSC port is one the system just chose; should
    another process bind it first, serve says it cannot listen there and another is tried."""
    import socket

    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            osc_port = s.getsockname()[1]
        proc = subprocess.Popen([str(BIN), "serve", "--atlas", str(atlas_dir), "--port", "0",
                                 "--osc-in", str(osc_port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={"CI": "1", "PATH": "/usr/bin:/bin"})
        line = _first_line(proc, timeout=60)
        if m := re.search(r"at http://127\.0\.0\.1:(\d+)/", line):
            return proc, int(m.group(1)), osc_port
        out, err = proc.communicate(timeout=20)
        assert "cannot listen there" in err, line + out + err
    raise AssertionError(f"serve found no free OSC port in {attempts} tries")


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line ``proc`` prints ("" when it exits first), waited for up to ``timeout``."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"serve printed nothing in {timeout} s") from None


def test_a_burst_of_osc_arrives_in_order_and_the_last_position_stays(atlas_dir):
    with _listening(atlas_dir) as (stream, port):
        osc = SimpleUDPClient("127.0.0.1", port)
        for i in range(300):  # a fader swept fast: 300 messages in about 0.3 s
            osc.send_message("/soundatlas/cursor/norm", [i / 299])
            time.sleep(0.001)  # the fader's pace
        seen = []
        for _ in range(40):  # the end marker, sent again until one is back (UDP may drop it)
            osc.send_message("/soundatlas/play", 1)
            try:
                while (event := stream.next(timeout=0.5))["type"] != "play":
                    seen.append(event["norm"][0])
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("no end marker came back in 20 s")
    # handled in the order sent (one thread), so the last position to arrive is the one that
    # stays; UDP itself may drop a few datagrams on a loaded machine
    assert seen == sorted(seen), "messages were handled out of order"
    assert len(seen) >= 240 and seen[-1] >= 0.9


def test_the_osc_listener_starts_again_with_the_app(atlas_dir):
    """An app started, stopped and started again (two lifespans) listens both times, on the
    same port."""
    app = create_app(atlas_dir, osc_in="127.0.0.1:0")
    port = app.state.web.osc_in.endpoint.port
    for _ in range(2):
        with ThreadedServer(app) as server:
            stream = EventStream(server.port)
            try:
                assert stream.next()["type"] == "hello"
                SimpleUDPClient("127.0.0.1", port).send_message("/soundatlas/select", 4)
                assert stream.next()["id"] == 4
            finally:
                stream.close()
