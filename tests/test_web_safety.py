"""What the web server refuses: a path-traversal corpus against /api/files, foreign Host
headers; and ``soundatlas serve --get`` as a cheap smoke test through the real command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tone
from soundatlas.atlas import Atlas
from soundatlas.web import create_app
from soundatlas.web.client import call
from soundatlas.web.security import is_loopback_host

BIN = Path(sys.executable).parent / "soundatlas"
SECRET = b"TOPSECRET-outside-the-library"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A library with a file outside it, symlinks that escape and one that stays inside, a
    hidden file and the atlas in a visible folder; (app, library, files inside)."""
    root = tmp_path_factory.mktemp("safety")
    lib, outside = root / "lib", root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    write_tone(lib / "a.wav", 440.0, seconds=0.3)
    write_tone(lib / "sub" / "b.wav", 220.0, seconds=0.3)
    (lib / "notes.txt").write_text("a text file of the library\n")
    for odd in ("50%25 mix.wav", "100%.wav", "a:b.wav"):  # names a library may hold
        (lib / odd).write_bytes((lib / "a.wav").read_bytes() + odd.encode())
    (lib / ".hidden.wav").write_bytes((lib / "a.wav").read_bytes())
    (lib / "escape.wav").symlink_to(outside / "secret.txt")
    (lib / "outdir").symlink_to(outside, target_is_directory=True)
    (lib / "inlink.wav").symlink_to(lib / "sub" / "b.wav")
    (lib / "relative-escape.wav").symlink_to(Path("..") / "outside" / "secret.txt")
    Atlas.create(lib / "atlasdir", library=lib).close()  # an atlas inside the library, not hidden
    return create_app(lib / "atlasdir"), lib, outside


def _get(app, target: str, headers=()):
    """One GET with ``target`` exactly as a client could put it on the wire (no normalising)."""
    return asyncio.run(call(app, "GET", target, headers=headers))


REFUSED = [
    "../outside/secret.txt",
    "../../../../../../etc/passwd",
    "..%2foutside%2fsecret.txt",
    "..%2Foutside/secret.txt",
    "%2e%2e/outside/secret.txt",
    "%2E%2E/outside/secret.txt",
    "%2e%2e%2foutside%2fsecret.txt",
    "%252e%252e/outside/secret.txt",
    "%252e%252e%252foutside%252fsecret.txt",
    "..%252foutside%252fsecret.txt",
    "....//outside/secret.txt",
    "....//....//etc/passwd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "%2Fetc/passwd",
    "{outside}/secret.txt",
    "..\\outside\\secret.txt",
    "..%5coutside%5csecret.txt",
    "sub%5c..%5c..%5coutside%5csecret.txt",
    "a.wav%00",
    "a.wav%00.png",
    "%00../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "a/../../x",
    "sub/%2e%2e/%2e%2e/outside/secret.txt",
    "%E2%80%A5/outside/secret.txt",  # two-dot leader
    "%EF%BC%8E%EF%BC%8E/outside/secret.txt",  # fullwidth full stops
    "\u2025/outside/secret.txt",
    "..;/outside/secret.txt",
    "C:/Windows/win.ini",
    "c:%5cwindows%5cwin.ini",
    "escape.wav",  # a symlink to a file outside
    "relative-escape.wav",
    "outdir/secret.txt",  # a symlink to a folder outside
    "./outdir/secret.txt",
    ".hidden.wav",
    "sub/../.hidden.wav",
    "atlasdir/atlas.sqlite",  # the atlas is not a file of the library
    "sub",  # a folder
    "",
    "no-such-file.wav",
]


@pytest.mark.parametrize("rel", REFUSED)
def test_traversal_corpus_is_refused_with_json_404(site, rel):
    app, lib, outside = site
    target = "/api/files/" + rel.replace("{outside}", str(outside))
    status, headers, body = _get(app, target)
    assert status == 404, (target, status, body[:200])
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert list(payload) == ["error"] and payload["error"].startswith("not a file of the library")
    assert SECRET not in body and b"root:" not in body


# as sent -> the file served; a % in a name is sent as %25 and is the name's own once decoded
SERVED = {"a.wav": "a.wav", "./a.wav": "a.wav", "sub/b.wav": "sub/b.wav",
          "sub/./b.wav": "sub/b.wav", "sub//b.wav": "sub/b.wav", "sub/%62.wav": "sub/b.wav",
          "inlink.wav": "sub/b.wav", "notes.txt": "notes.txt", "%61.wav": "a.wav",
          "50%2525%20mix.wav": "50%25 mix.wav", "100%25.wav": "100%.wav", "a:b.wav": "a:b.wav",
          "a%3Ab.wav": "a:b.wav"}


@pytest.mark.parametrize("rel", SERVED)
def test_files_of_the_library_are_served(site, rel):
    app, lib, _ = site
    status, headers, body = _get(app, "/api/files/" + rel)
    assert status == 200, (rel, body[:200])
    name = SERVED[rel]
    assert body == (lib / name).read_bytes()
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"  # no library page runs as this site


def test_library_files_stream_ranges(site):
    app, lib, _ = site
    data = (lib / "a.wav").read_bytes()
    status, headers, body = _get(app, "/api/files/a.wav", headers=[("Range", "bytes=44-143")])
    assert status == 206 and body == data[44:144]
    assert headers["content-range"] == f"bytes 44-143/{len(data)}"
    status, headers, body = _get(app, "/api/files/a.wav",
                                 headers=[("Range", f"bytes={len(data) + 1}-")])
    assert status == 416 and "error" in json.loads(body)


def test_the_same_refusals_through_testclient(site):
    """The same through TestClient (httpx), which percent-encodes on its own."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    app, _, _ = site
    client = TestClient(app)
    for url in ("/api/files/%2e%2e/outside/secret.txt", "/api/files/..%2Foutside%2Fsecret.txt",
                "/api/files/%252e%252e/outside/secret.txt", "/api/files/escape.wav",
                "/api/files/a.wav%00"):
        r = client.get(url)
        assert r.status_code == 404 and "error" in r.json() and SECRET not in r.content, url
    assert client.get("/api/files/./a.wav").status_code == 200


def test_a_foreign_host_header_is_refused_when_hosts_are_restricted(site):
    _, lib, _ = site
    app = create_app(lib / "atlasdir", allowed_hosts={"127.0.0.1", "localhost", "::1"})
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        status, _, body = _get(app, "/api/atlas", headers=[("host", host)])
        assert status == 200, (host, body)
    status, headers, body = _get(app, "/api/atlas", headers=[("host", "evil.example:8000")])
    assert status == 400 and "evil.example" in json.loads(body)["error"]


def test_serve_on_loopback_refuses_a_foreign_host_header(site):
    """DNS rebinding: a page on another site whose name resolves to 127.0.0.1 reaches the
    server with its own name in Host. `serve` on a loopback address (the default) answers only
    loopback names; the check is made by `serve` itself, not only by create_app."""
    import re

    import httpx

    _, lib, _ = site
    server = subprocess.Popen([str(BIN), "serve", "--atlas", str(lib / "atlasdir"), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, CI="1"))
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.get("/api/atlas").status_code == 200
            r = c.get("/api/atlas", headers={"host": "evil.example"})
            assert r.status_code == 400 and "evil.example" in r.json()["error"]
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_loopback_hosts():
    assert all(map(is_loopback_host, ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "192.168.1.4", "::", "example.org"]))


def _serve(*args, atlas: Path):
    env = dict(os.environ, CI="1")
    return subprocess.run([str(BIN), "serve", "--atlas", str(atlas), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_serve_get_answers_one_request_without_a_port(site):
    _, lib, _ = site
    out = _serve("--get", "/api/atlas", atlas=lib / "atlasdir")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["n_samples"] == 0 and d["library"] == "lib" and d["default_model"] is None
    assert "soundatlas map" in d["hint"]
    out = _serve("--get", "/api/nope", atlas=lib / "atlasdir")
    assert out.returncode == 1 and "error" in json.loads(out.stdout)
    out = _serve("--get", "/api/files/a.wav", atlas=lib / "atlasdir")
    assert out.returncode == 0 and out.stdout.startswith("200 ")
    assert f"{(lib / 'a.wav').stat().st_size} bytes" in out.stdout


@pytest.mark.parametrize("headers, refused", [
    ([("origin", "https://evil.example")], True),
    ([("origin", "null")], True),  # a sandboxed frame or a file:// page
    ([("origin", "http://127.0.0.1:8001")], True),  # another port is another site
    ([("sec-fetch-site", "cross-site")], True),
    ([("origin", "http://127.0.0.1:8000")], False),
    ([("origin", "https://127.0.0.1:8000")], False),  # a TLS proxy in front changes the scheme
    ([("origin", "http://127.0.0.1:8000"), ("sec-fetch-site", "same-origin")], False),
    ([], False),  # curl, scripts: no Origin at all
])
def test_requests_that_do_work_from_another_site_are_refused(site, headers, refused):
    """A page on another site open in the same browser can POST a form or a no-cors fetch to
    the local server (it cannot read the answer, but the work would be done): refused."""
    app = site[0]
    body = json.dumps({"ids": [1], "format": "csv"}).encode()
    status, _, answer = asyncio.run(call(app, "POST", "/api/export", body=body, headers=[
        ("host", "127.0.0.1:8000"), ("content-type", "application/json"), *headers]))
    if refused:
        assert status == 403 and "another site" in json.loads(answer)["error"]
    else:
        assert status == 404 and "no samples with ids 1" in json.loads(answer)["error"]
    # reading stays open to any origin: GET is not refused
    status, _, _ = _get(app, "/api/atlas", headers=[("host", "127.0.0.1:8000"), *headers])
    assert status == 200
