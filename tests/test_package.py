"""The package installs anywhere: the pins resolve from the package index alone, and a wheel is a
complete install (shipped model, page and three.js) that maps and serves a library with no
repository beside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

import soundatlas

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not an exact pin"
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _index_only_env() -> dict[str, str]:
    """The environment without any pip setting: no configuration file, no local wheel folder,
    no extra index; only the package index's own address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_every_pin_is_a_public_version():
    for name, version in _pins().items():
        assert "+" not in version, (f"requirements.txt pins {name}=={version}: a local version "
                                    "label exists only where someone built it")


@pytest.mark.slow
def test_the_pins_resolve_from_the_package_index_without_any_local_wheel_folder(tmp_path):
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         "--quiet", "--report", str(report), "-r", str(REQUIREMENTS)],
        env=_index_only_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    chosen = {_canonical(i["metadata"]["name"]): i for i in json.loads(report.read_text())["install"]}
    pins = _pins()
    assert set(chosen) == set(pins)
    for name, version in pins.items():
        item = chosen[name]
        assert item["metadata"]["version"] == version
        url = item["download_info"]["url"]
        assert url.startswith("https://"), f"{name}=={version} came from {url}, not the index"


# -- the wheel ---------------------------------------------------------------------------------


class _Assets(HTMLParser):
    """Every local file an HTML page references (scripts, styles, icons, the import map)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.importmap: dict[str, str] = {}
        self._in_importmap = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("type") == "importmap":
            self._in_importmap = True
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("http:", "https:", "#", "data:")):
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        self._in_importmap = False

    def handle_data(self, data):
        if self._in_importmap and data.strip():
            self.importmap.update(json.loads(data)["imports"])

    def resolve(self, specifier: str) -> str | None:
        """A bare module specifier through the import map (exact entry, else longest prefix)."""
        if specifier in self.importmap:
            return self.importmap[specifier]
        prefixes = [k for k in self.importmap if k.endswith("/") and specifier.startswith(k)]
        if prefixes:
            k = max(prefixes, key=len)
            return self.importmap[k] + specifier[len(k):]
        return None


_IMPORT = re.compile(r"""(?:^|[;\s])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]""" +
                     r"""|(?:^|[;\s])import\s*['"]([^'"]+)['"]""", re.M)


def _module_imports(js: str) -> list[str]:
    return [a or b for a, b in _IMPORT.findall(js)]


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


_VENDOR = ROOT / "src" / "soundatlas" / "web" / "static" / "vendor"
_VENDOR_FILES: dict[str, dict[str, int]] = {}  # "before"/"after" the build: path -> inode


def _vendor_files() -> dict[str, int]:
    return {str(p.relative_to(_VENDOR)): p.stat().st_ino for p in _VENDOR.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _VENDOR_FILES["before"] = _vendor_files()
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    _VENDOR_FILES["after"] = _vendor_files()
    (whl,) = out.glob("soundatlas-*.whl")
    return whl


def test_building_a_wheel_leaves_the_checkouts_page_files_in_place(wheel):
    """The build copied three.js into the checkout by emptying its vendor folder first: the
    page the other tests serve lost it for a moment, and make's stamp in it went, so that
    every later `make test` ran `npm ci` again. Files already up to date stay as they are."""
    before, after = _VENDOR_FILES["before"], _VENDOR_FILES["after"]
    assert "three/three.module.js" in after
    assert {k: v for k, v in after.items() if k in before} == before


def test_the_wheel_carries_the_model_the_page_and_three_js_and_declares_ranges(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"soundatlas-{soundatlas.__version__}.dist-info/METADATA").decode()
    for f in ("soundatlas/models/default/weights.npz", "soundatlas/models/default/config.json",
              "soundatlas/web/static/index.html", "soundatlas/web/static/app.js",
              "soundatlas/web/static/vendor/three/three.module.js",
              "soundatlas/web/static/vendor/three/three.core.js",
              "soundatlas/web/static/vendor/three/addons/controls/OrbitControls.js"):
        assert f in names, f"{wheel.name} lacks {f}"
    assert f"\nVersion: {soundatlas.__version__}\n" in meta
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any(r.startswith("torch") for r in requires)
    assert not [r for r in requires if "==" in r], "the wheel must declare ranges, not pins"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A new virtual environment holding soundatlas from the wheel and nothing of the checkout.

    Its dependencies come from this environment's site-packages through a path file (the
    installed packages only: the checkout's editable install is not activated that way), so the
    test needs no network and no second copy of torch."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                          "--no-index", "--quiet", str(wheel)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return venv


def _run(venv: Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(venv / "bin" / "soundatlas"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_installed_wheel_renders_maps_and_serves_a_library_with_its_page(installed, tmp_path):
    py = installed / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import soundatlas; print(soundatlas.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(installed), f"soundatlas imported from {where}"
    assert not Path(where.strip()).is_relative_to(ROOT)

    version = _run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"soundatlas {soundatlas.__version__}"

    lib = tmp_path / "lib"
    made = _run(installed, "demo-library", str(lib), "--classes", "flute", "--velocities", "80",
                "--jobs", "2", "-q", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    mapped = _run(installed, "map", str(lib), "--jobs", "2", "-q", cwd=tmp_path)
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    n_files = len(list(lib.glob("flute/*.wav")))
    atlas = _run(installed, "serve", "--atlas", str(lib / ".soundatlas"), "--get", "/api/atlas",
                 cwd=tmp_path)
    assert atlas.returncode == 0, atlas.stderr
    facts = json.loads(atlas.stdout[atlas.stdout.index("{"):])
    assert facts["n_samples"] == n_files > 0
    assert facts["default_model"] == "default"
    assert {m["name"]: m["n_embedded"] for m in facts["models"]}["default"] == n_files

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen([str(installed / "bin" / "soundatlas"), "serve", "--atlas",
                               str(lib / ".soundatlas"), "--port", "0"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:(\d+))/", line)
        assert m and int(m.group(2)) > 0, (line, server.stderr.read() if server.poll() else "")
        base = m.group(1)
        _check_every_asset(base)
        _load_in_chromium(base, n_files, tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _check_every_asset(base: str) -> None:
    status, body, _ = _get(base + "/")
    assert status == 200
    page = _Assets()
    page.feed(body.decode())
    assert "three" in page.importmap, page.importmap
    seen, todo = set(), [u if u.startswith("/") else "/" + u for u in page.urls if u != "/docs"]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        status, body, ctype = _get(base + url)
        assert status == 200 and body, (url, status, body[:200])
        if url.endswith(".js"):
            assert "javascript" in ctype, (url, ctype)
            for ref in _module_imports(body.decode()):
                if ref.startswith("."):
                    todo.append(os.path.normpath(os.path.join(os.path.dirname(url), ref)))
                elif ref.startswith("/"):
                    todo.append(ref)
                else:
                    resolved = page.resolve(ref)
                    assert resolved, f"{url} imports {ref!r}, which the import map does not name"
                    todo.append(resolved)
    assert any(u.endswith("three.module.js") for u in seen)
    assert any(u.endswith("three.core.js") for u in seen)  # imported by three.module.js
    assert any(u.endswith("OrbitControls.js") for u in seen)


def _load_in_chromium(base: str, n_points: int, tmp_path: Path) -> None:
    from browser import HOOK, VIEWPORT, launch, require_chromium

    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.goto(base + "/")
            page.wait_for_function(f"{HOOK} && ({HOOK}.state.ready || {HOOK}.state.error)")
            state = page.evaluate(f"{HOOK}.state")
        finally:
            browser.close()
    assert state["error"] is None
    assert state["ready"] and state["nPoints"] == n_points
    assert errors == []
