"""The page end to end: a real uvicorn server on a small rendered atlas, driven in Debian's
Chromium (headless, software WebGL) through Playwright.

What the page does is read back from its automation hook ``window.soundatlas`` (documented at the
top of ``static/app.js``) and from the DOM, and compared with what the API answers for the same
question. Every test leaves a screenshot in ``artifacts/web/`` and fails on any console error it
did not expect.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest

from browser import HOOK, VIEWPORT, launch, require_chromium  # noqa: E402

CHROMIUM = require_chromium()  # skips the module, naming the package, when it is missing

from playwright.sync_api import sync_playwright  # noqa: E402

from conftest import renders_until  # noqa: E402
from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.web import create_app  # noqa: E402
from soundatlas.web.server import ThreadedServer  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
# three instruments over eight pitches, both articulations: 48 notes, two maps of them
CLASSES = {"flute": (73, 60, 67), "trombone": (57, 60, 67), "violin": (40, 60, 67)}


# -- the atlas, the servers, the browser -------------------------------------------------------


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> Path:
    """The render indexed, with two tiny models embedded: 'm' (instrument neighbourhood, the
    default) and 'p' (pitch, with a measured pitch axis), so that the page has two maps to
    switch between."""
    from soundatlas.artifact import resolve_model
    from soundatlas.demo import render_library
    from soundatlas.embed import embed_atlas
    from soundatlas.indexing import index_library
    from soundatlas.train import settings_for, train

    root = tmp_path_factory.mktemp("web-e2e")
    render_library(root / "lib", classes=CLASSES, velocities=(80,), n_jobs=2)
    index_library(root / "lib", atlas_dir=root / "atlas", n_jobs=1)
    with Atlas.open(root / "atlas", write=True) as atlas:
        for name, neighbourhood, seed in (("m", "instrument", 0), ("p", "pitch", 1)):
            s = settings_for("fast", iterations=30, batch_size=16, valid_every=30,
                             checkpoint_every=30)
            train(atlas, neighbourhood=neighbourhood, settings=s, seed=seed, name=name,
                  pitch_axis=name == "p")
            artifact, reg = resolve_model(atlas, name)
            embed_atlas(atlas, artifact, reg.id)
    return root / "atlas"


@pytest.fixture(scope="module")
def unmapped(mapped, tmp_path_factory) -> Path:
    """The same atlas with no model at all: nothing embedded."""
    bare = tmp_path_factory.mktemp("web-e2e-bare") / "atlas"
    shutil.copytree(mapped, bare)
    with Atlas.open(bare, write=True) as atlas:
        for model in atlas.models():
            atlas.remove_model(model.name)
    return bare


@pytest.fixture(scope="module")
def server(mapped):
    with ThreadedServer(create_app(mapped)) as s:
        yield s


@pytest.fixture(scope="module")
def bare_server(unmapped):
    with ThreadedServer(create_app(unmapped)) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p, CHROMIUM)
        yield b
        b.close()


class ConsoleErrors:
    """Console errors and uncaught exceptions of a page; a test names the ones it causes."""

    def __init__(self):
        self.seen: list[str] = []
        self.expected: list[str] = []

    def unexpected(self) -> list[str]:
        return [e for e in self.seen if not any(x in e for x in self.expected)]


@pytest.fixture
def console():
    return ConsoleErrors()


@pytest.fixture
def page(browser, console, request):
    """A fresh page (own context: no cache, no state); screenshot and error check at the end."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    pg.on("console", lambda m: console.seen.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: console.seen.append(f"uncaught: {e}"))
    yield pg
    try:
        _screenshot(pg, request.node.name)
    finally:
        context.close()
    assert console.unexpected() == []


def _open(page, server) -> dict:
    """Load the map and wait until its points are drawn; the page's state."""
    page.goto(server.url + "/")
    page.wait_for_function(f"{HOOK} && ({HOOK}.state.ready || {HOOK}.state.error)")
    state = page.evaluate(f"{HOOK}.state")
    assert state["error"] is None
    return state


def _positions(page, ids: list[int]) -> dict[int, tuple[float, float]]:
    got = page.evaluate(f"ids => ids.map(id => {HOOK}.screenPosition(id))", ids)
    return {i: (p["x"], p["y"]) for i, p in zip(ids, got) if p is not None}


def _map_box(page) -> dict:
    return page.locator("#map canvas").bounding_box()


def _isolated(page, server, n: int, *, model: str = "m", min_px: float = 16) -> list[int]:
    """``n`` ids whose points lie on the canvas at least ``min_px`` from any other point's, the
    most isolated first: pointing at them hits them and nothing else."""
    ids = _embedded_ids(server, model)
    pos = _positions(page, ids)
    box = _map_box(page)
    margin = 30
    room = {}
    for i, (x, y) in pos.items():
        if not (box["x"] + margin < x < box["x"] + box["width"] - margin
                and box["y"] + margin < y < box["y"] + box["height"] - margin):
            continue
        room[i] = min(((x - u) ** 2 + (y - v) ** 2) ** 0.5 for j, (u, v) in pos.items() if j != i)
    best = sorted((i for i in room if room[i] >= min_px), key=lambda i: -room[i])
    assert len(best) >= n, f"only {len(best)} points are {min_px}px clear of the others"
    return best[:n]


def _embedded_ids(server, model: str) -> list[int]:
    headers, body = server.request(f"/api/models/{model}/points")
    n = int(headers["x-count"])
    import numpy as np

    return np.frombuffer(body[: 4 * n], dtype="<i4").tolist()


def _in_polygon(x: float, y: float, points: list[tuple[float, float]]) -> bool:
    inside = False
    for (xi, yi), (xj, yj) in zip(points, points[-1:] + points[:-1]):
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
    return inside


def _screenshot(page, name: str) -> None:
    """A screenshot mid-test (the fixture takes one at the end of each test)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _frames_drawn(page, n: int) -> None:
    """Wait until the page has drawn ``n`` more animation frames."""
    page.evaluate("n => new Promise(done => { const next = k => k ? requestAnimationFrame("
                  "() => next(k - 1)) : done(); next(n); })", n)


def _settled_positions(page, ids: list[int], *, visible: bool = False
                       ) -> list[tuple[float, float] | None]:
    """The points' client positions once the view stops moving (a fly-to glides); with
    ``visible``, once they are all on the map too (a point flown to may start off it)."""
    page.evaluate("""([ids, visible]) => new Promise(done => {
        let last = null;
        const step = () => {
            const at = ids.map(id => window.soundatlas.screenPosition(id));
            const now = JSON.stringify(at);
            if (now === last && !(visible && at.includes(null))) done();
            else { last = now; requestAnimationFrame(step); }
        };
        requestAnimationFrame(step);
    })""", [ids, visible])
    pos = _positions(page, ids)
    return [pos.get(i) for i in ids]  # None: off the map


def _hold_fetches(page, pattern: str) -> None:
    """Hold back the page's requests whose URL matches the regular expression ``pattern`` until
    ``window.releaseHeld()``; ``window.heldAnswered`` counts those whose answers (bodies too)
    have since arrived."""
    page.evaluate("""source => {
        const fetched = window.fetch;
        const wanted = new RegExp(source);
        let release;
        const held = new Promise((done) => { release = done; });
        window.releaseHeld = release;
        window.heldAnswered = 0;
        window.fetch = (url, ...rest) => {
            if (!wanted.test(String(url))) return fetched(url, ...rest);
            return held.then(() => fetched(url, ...rest)).then(async (response) => {
                await response.clone().arrayBuffer();  // all of it has come
                window.heldAnswered += 1;
                return response;
            });
        };
    }""", pattern)


def _state(page, key: str):
    return page.evaluate(f"{HOOK}.state[{json.dumps(key)}]")


def _list_ids(page, selector: str) -> list[int]:
    ids = page.eval_on_selector_all(f"{selector} li", "lis => lis.map(li => li.dataset.id)")
    return [int(x) for x in ids]


# -- the tests ---------------------------------------------------------------------------------


def test_the_page_loads_and_draws_every_embedded_point(page, server, console):
    atlas = server.get("/api/atlas")
    models = {m["name"]: m for m in atlas["models"]}
    state = _open(page, server)
    assert state["ready"] is True
    assert state["model"] == atlas["default_model"] == "m"
    assert state["nPoints"] == models["m"]["n_embedded"] == atlas["n_samples"] == 48
    assert state["colourBy"] == "instrument" and state["dimmed"] == 0
    assert page.locator("#loading").is_hidden()
    legend = page.locator("#legend li").all_inner_texts()
    assert [line.split()[0] for line in legend] == ["flute", "trombone", "violin"]
    assert page.locator("#model option").all_inner_texts() == ["m · instrument", "p · pitch"]
    assert console.seen == []


def test_the_map_opens_whole_centred_and_clear_of_the_legend_and_panel(page, server):
    _open(page, server)
    ids = _embedded_ids(server, "m")
    pos = _positions(page, ids)
    assert len(pos) == len(ids)  # every point is in front of the camera
    canvas = _map_box(page)
    legend = page.locator("#legend").bounding_box()
    panel = page.locator("#panel").bounding_box() if page.locator("#panel").count() else None
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    # all on the canvas, none under the legend's column or the panel
    assert canvas["x"] < min(xs) and max(xs) < canvas["x"] + canvas["width"]
    assert canvas["y"] < min(ys) and max(ys) < canvas["y"] + canvas["height"]
    assert min(xs) > legend["x"] + legend["width"]
    if panel:
        assert max(xs) < panel["x"]
    # centred in the free area, and filling it in one direction at least
    free_left = legend["x"] + legend["width"]
    free_w = canvas["x"] + canvas["width"] - free_left
    assert abs((min(xs) + max(xs)) / 2 - (free_left + free_w / 2)) < 0.05 * free_w
    assert abs((min(ys) + max(ys)) / 2 - (canvas["y"] + canvas["height"] / 2)) < 0.05 * canvas["height"]
    assert (max(xs) - min(xs)) > 0.6 * free_w or (max(ys) - min(ys)) > 0.6 * canvas["height"]
    # the Fit button comes back to the same view after the map was turned and zoomed
    page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    page.mouse.wheel(0, -600)
    page.wait_for_function(f"{HOOK}.screenPosition({ids[0]}) !== null")
    x0, y0 = pos[ids[0]]
    moved = page.evaluate(f"{HOOK}.screenPosition({ids[0]})")
    assert abs(moved["x"] - x0) + abs(moved["y"] - y0) > 3  # the zoom moved it
    page.click("#view-reset")
    page.wait_for_function(  # the orbit's damping brings it back over a few frames
        f"(p => p && Math.abs(p.x - {x0}) + Math.abs(p.y - {y0}) < 1)({HOOK}.screenPosition({ids[0]}))")
    again = _positions(page, ids)
    assert max(abs(again[i][0] - pos[i][0]) + abs(again[i][1] - pos[i][1]) for i in ids) < 3
    # the flat view, asked for while the whole map is shown, shows the whole map too, also
    # after a click on a point (which moves nothing)
    lone = _isolated(page, server, 1)[0]
    page.mouse.click(*_positions(page, [lone])[lone])
    page.wait_for_function(f"{HOOK}.state.selected === {lone}")
    for plane in ("xy", "xz", "yz"):
        page.select_option("#plane", plane)
        page.evaluate("document.activeElement.blur()")  # keys go to the map, not the menu
        page.keyboard.press("2")
        page.wait_for_function(f"{HOOK}.state.view === '2d'")
        flat = _positions(page, ids)
        fx, fy = [x for x, _ in flat.values()], [y for _, y in flat.values()]
        assert len(flat) == len(ids), plane
        assert canvas["x"] < min(fx) and max(fx) < canvas["x"] + canvas["width"], plane
        assert canvas["y"] < min(fy) and max(fy) < canvas["y"] + canvas["height"], plane
        # framed as Fit frames it: centred in the free area, filling it one way at least
        assert abs((min(fx) + max(fx)) / 2 - (free_left + free_w / 2)) < 0.05 * free_w, plane
        assert abs((min(fy) + max(fy)) / 2 - (canvas["y"] + canvas["height"] / 2)) < (
            0.05 * canvas["height"]), plane
        assert (max(fx) - min(fx)) > 0.6 * free_w or (max(fy) - min(fy)) > (
            0.6 * canvas["height"]), plane
        page.keyboard.press("3")
        page.wait_for_function(f"{HOOK}.state.view === '3d'")


def test_hovering_a_point_plays_it(page, server):
    _open(page, server)
    sample_id = _isolated(page, server, 1)[0]
    x, y = _positions(page, [sample_id])[sample_id]
    page.evaluate("window.__played = []; window.addEventListener('soundatlas:play', "
                  "e => window.__played.push(e.detail.id))")
    with page.expect_response(lambda r: r.url.endswith(f"/api/samples/{sample_id}/audio")) as audio:
        page.mouse.move(x, y)
    assert audio.value.status == 200
    page.wait_for_function(f"window.__played.includes({sample_id})")
    assert _state(page, "lastPlayed") == sample_id
    name = server.get(f"/api/samples/{sample_id}")["path"].split("/")[-1]
    page.wait_for_function("name => document.querySelector('#tooltip').textContent.includes(name)",
                           arg=name)


def test_hovering_many_points_asks_their_names_together(page, server):
    """Names for the tooltip come from one POST /api/samples/lookup per burst, not a request per
    point; a name seen once is not asked again."""
    _open(page, server)
    ids = _isolated(page, server, 4)
    asked = []
    page.on("request", lambda r: asked.append((r.method, r.url.split("/api/", 1)[-1]))
            if "/api/samples" in r.url and not r.url.endswith("/audio") else None)
    names = page.evaluate(f"ids => Promise.all(ids.map(id => {HOOK}.pathOf(id)))", ids)
    want = [server.get(f"/api/samples/{i}")["path"] for i in ids]
    assert names == want
    assert asked == [("POST", "samples/lookup")]
    for sample_id in ids:  # hovering them now needs no name request at all
        x, y = _positions(page, [sample_id])[sample_id]
        page.mouse.move(x, y)
        page.wait_for_function("name => document.querySelector('#tooltip').textContent"
                               ".includes(name)", arg=want[ids.index(sample_id)].split("/")[-1])
    assert asked == [("POST", "samples/lookup")]


def test_search_and_label_filters_dim_the_rest(page, server):
    state = _open(page, server)
    page.fill("#search", "tromb")
    want = server.get("/api/samples?q=tromb&limit=1")["total"]
    assert want == 16
    page.wait_for_function(f"{HOOK}.state.matches === {want}")
    assert _state(page, "dimmed") == state["nPoints"] - want
    assert f"{want} of 48" in page.inner_text("#match-count")
    # the list of matches is in view, near the top of the panel, not below every other tool
    top = page.locator("#matches-title").bounding_box()["y"]
    assert 0 <= top < VIEWPORT["height"] / 2, top
    # a label filter on top: key and value chosen in the toolbar
    page.select_option("#filter-key", "articulation")
    page.select_option("#filter-value", "short")
    page.click("#filter-add")
    want = server.get("/api/samples?q=tromb&label=articulation:short&limit=1")["total"]
    assert want == 8
    page.wait_for_function(f"{HOOK}.state.matches === {want}")
    assert _state(page, "dimmed") == state["nPoints"] - want
    # a second value of the same label: either value (a sample has one of them)
    page.select_option("#filter-value", "long")
    page.click("#filter-add")
    want = server.get("/api/samples?q=tromb&label=articulation:short&label=articulation:long"
                      "&limit=1")["total"]
    assert want == 16
    page.wait_for_function(f"{HOOK}.state.matches === {want}")
    page.click("#filter-clear")
    page.wait_for_function(f"{HOOK}.state.matches === null && {HOOK}.state.dimmed === 0")
    # Esc in the search box empties it, and the map shows every point again
    page.fill("#search", "tromb")
    page.wait_for_function(f"{HOOK}.state.matches === 16")
    page.press("#search", "Escape")
    page.wait_for_function(f"{HOOK}.state.matches === null && {HOOK}.state.dimmed === 0")
    assert page.input_value("#search") == "" and "of 48" not in page.inner_text("#match-count")


def test_clicking_a_point_selects_it_with_neighbours_cqt_and_trajectory(page, server):
    _open(page, server)
    sample_id = _isolated(page, server, 1)[0]
    x, y = _positions(page, [sample_id])[sample_id]
    page.mouse.click(x, y)
    page.wait_for_function(f"{HOOK}.state.selected === {sample_id} && "
                           f"{HOOK}.state.neighbours.length === 10 && {HOOK}.state.trajectory")
    near = server.get(f"/api/models/m/neighbours/{sample_id}?k=10")["neighbours"]
    want = [n["id"] for n in near]
    assert _state(page, "neighbours") == want
    assert _list_ids(page, "#neighbours") == want
    # "by timbre" and "by the map" list what the server answers in those spaces; back to the
    # default, sound and pitch
    listed = []
    for space, asked in (("timbre", "&space=timbre"), ("map", "&space=map"), ("similarity", "")):
        page.select_option("#near-space", space)
        near_in = server.get(f"/api/models/m/neighbours/{sample_id}?k=10{asked}")
        assert near_in["space"] == space
        ids = json.dumps([n["id"] for n in near_in["neighbours"]], separators=(",", ":"))
        page.wait_for_function(f"JSON.stringify({HOOK}.state.neighbours) === {json.dumps(ids)}")
        listed.append(_list_ids(page, "#neighbours"))
        assert listed[-1] == json.loads(ids)
    assert listed[1] != listed[0] and listed[-1] == want  # the choice reached the server
    # an entry drags out as its audio file (to the desktop, or a DAW)
    drag = page.evaluate("""() => {
        const dt = new DataTransfer();
        document.querySelector('#neighbours li').dispatchEvent(
            new DragEvent('dragstart', {dataTransfer: dt, bubbles: true}));
        return [dt.getData('DownloadURL'), dt.getData('text/uri-list')];
    }""")
    url = f"{server.url}/api/samples/{want[0]}/audio"
    assert drag == [f"audio/wav:{near[0]['path'].split('/')[-1]}:{url}", url]
    info = server.get(f"/api/samples/{sample_id}")
    assert page.inner_text("#sample-path") == info["path"]
    page.wait_for_function("document.querySelector('#cqt').complete && "
                           "document.querySelector('#cqt').naturalWidth > 0")
    headers, _ = server.request(f"/api/models/m/trajectory/{sample_id}")
    first, last = int(headers["x-sounding-first"]), int(headers["x-sounding-last"])
    # the path drawn is the sounding part, not the near-silence after the note
    assert _state(page, "trajectory") == {"id": sample_id, "nFrames": int(headers["x-frames"]),
                                          "drawn": [first, last], "points": last - first + 1}
    # the keyboard walks the list: the first neighbour plays; Space plays the selected sample
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"{HOOK}.state.lastPlayed === {want[0]}")
    page.keyboard.press(" ")
    page.wait_for_function(f"{HOOK}.state.lastPlayed === {sample_id}")
    # the sample and its neighbours join the selection; Escape clears both
    page.click("#add-neighbours")
    page.click("#add-selected")
    assert _state(page, "selection") == sorted([sample_id, *want])
    _screenshot(page, "selected-sample")
    page.keyboard.press("Escape")
    assert _state(page, "selected") is None and _state(page, "neighbours") == []
    assert _state(page, "selection") == []


def test_an_upload_is_placed_and_its_neighbours_listed(page, server, mapped, tmp_path, console):
    _open(page, server)
    # not audio: the server's message is shown
    text = tmp_path / "notes.wav"
    text.write_text("just some text")
    console.expected.append("status of 400")  # Chromium logs the failed request
    page.set_input_files("#query-file", str(text))
    page.wait_for_selector("#query-error:visible")
    assert "notes.wav" in page.inner_text("#query-error")
    assert "not audio" in page.inner_text("#query-error")
    assert _state(page, "query") is None
    # a copy of a library file lands on that file
    with Atlas.open(mapped) as atlas:
        record = atlas.samples()[20]
        path = atlas.library / record.path
    page.set_input_files("#query-file", str(path))
    page.wait_for_function(f"{HOOK}.state.query !== null")
    query = _state(page, "query")
    assert query["model"] == "m" and query["file"] == path.name
    assert query["neighbours"][0]["id"] == record.id
    assert _list_ids(page, "#query-neighbours")[0] == record.id
    # that file is the upload itself, already in the library: the list says so, for it alone
    entries = page.locator("#query-neighbours li")
    assert entries.nth(0).locator(".copy").inner_text() == "same file"
    assert entries.locator(".copy").count() == 1
    assert page.locator("#query-error").is_hidden()
    # "by timbre" lists the upload's nearest by timbre too, as the server answers it (the menu
    # is there with no sample selected)
    assert _state(page, "selected") is None
    page.select_option("#near-space", "timbre")
    page.wait_for_function(f"{HOOK}.state.query && {HOOK}.state.query.space === 'timbre'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    by_timbre = TestClient(create_app(mapped)).post(
        "/api/models/m/query", params={"k": 10, "space": "timbre"},
        files={"file": (path.name, path.read_bytes(), "audio/wav")}).json()
    assert by_timbre["space"] == "timbre"
    assert _list_ids(page, "#query-neighbours") == [n["id"] for n in by_timbre["neighbours"]]
    page.select_option("#near-space", "similarity")
    page.wait_for_function(f"{HOOK}.state.query && {HOOK}.state.query.space === 'similarity'")
    # it is not added; the page says how to add it
    assert page.text_content("#query-library") == mapped.parent.joinpath("lib").name
    assert server.get("/api/atlas")["n_samples"] == 48
    assert "silent" not in page.inner_text("#query-status")
    # a second of silence is placed, and the page says its place means nothing
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "hush.wav", np.zeros(44100, np.float32), 44100)
    page.set_input_files("#query-file", str(tmp_path / "hush.wav"))
    page.wait_for_function(f"{HOOK}.state.query?.file === 'hush.wav'")
    page.wait_for_function("document.getElementById('query-status').textContent"
                           ".includes('It is silent')")


def test_an_upload_over_the_servers_limit_is_refused_by_the_page_naming_the_limit(page, mapped):
    """The page knows the server's upload limit (/api/atlas) and refuses a larger file before
    sending it, naming the limit (a browser still sending a large body often sees the connection
    closed, not the server's 413)."""
    with Atlas.open(mapped) as atlas:
        path = atlas.library / atlas.samples()[20].path
    limit = path.stat().st_size - 1
    with ThreadedServer(create_app(mapped, max_upload_bytes=limit)) as srv:
        assert srv.get("/api/atlas")["max_upload_bytes"] == limit
        _open(page, srv)
        sent = []
        page.on("request", lambda r: sent.append(r.url) if "/query" in r.url else None)
        page.set_input_files("#query-file", str(path))
        page.wait_for_selector("#query-error:visible")
        assert f"larger than the server's upload limit of {limit} bytes" in \
            page.inner_text("#query-error")
        assert sent == [] and _state(page, "query") is None
        page.goto("about:blank")


def test_an_analogy_picked_on_the_map_matches_the_api(page, server, console):
    _open(page, server)
    a, b, c = _isolated(page, server, 3)
    page.click("#analogy-mode")
    assert _state(page, "mode") == "analogy"
    for sample_id in (a, b, c):
        x, y = _positions(page, [sample_id])[sample_id]
        page.mouse.click(x, y)
    page.wait_for_function(f"{HOOK}.state.analogy !== null")
    got = _state(page, "analogy")
    want = server.post("/api/models/m/analogy", {"a": a, "b": b, "c": c, "k": 10})
    assert (got["a"], got["b"], got["c"]) == (a, b, c)
    assert [n["id"] for n in got["neighbours"]] == [n["id"] for n in want["neighbours"]]
    assert got["point"] == pytest.approx(want["point"])
    assert _list_ids(page, "#analogy-results") == [n["id"] for n in want["neighbours"]]
    assert _state(page, "selected") is None  # picking is not selecting
    # "by the map" asks for the analogy there too (the menu is there with no sample selected)
    page.select_option("#near-space", "map")
    page.wait_for_function(f"{HOOK}.state.analogy && {HOOK}.state.analogy.space === 'map'")
    on_map = server.post("/api/models/m/analogy", {"a": a, "b": b, "c": c, "k": 10,
                                                   "space": "map"})
    assert _list_ids(page, "#analogy-results") == [n["id"] for n in on_map["neighbours"]]
    page.select_option("#near-space", "similarity")
    # an analogy that fails leaves no earlier answer under its error
    console.expected.append("status of 500")
    page.route("**/api/models/m/analogy*", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": "analogy broke"}'))
    page.click("#analogy-mode")  # back to exploring: a click selects
    page.evaluate(f"{HOOK}.select({b})")
    page.click("#set-c")
    page.wait_for_selector("#analogy-error:visible")
    assert page.inner_text("#analogy-error") == "analogy broke"
    assert _state(page, "analogy") is None and _list_ids(page, "#analogy-results") == []


def test_a_path_drawn_on_the_map_is_rendered_played_and_downloaded(page, server):
    import numpy as np
    import soundfile as sf

    _open(page, server)
    page.evaluate("window.plays = []; addEventListener('soundatlas:play', "
                  "e => window.plays.push(e.detail))")
    ids = _isolated(page, server, 3)
    page.keyboard.press("p")
    assert _state(page, "mode") == "path"
    for sample_id in ids:
        x, y = _positions(page, [sample_id])[sample_id]
        page.mouse.click(x, y)
    box = _map_box(page)
    corner = (box["x"] + box["width"] - 20, box["y"] + box["height"] - 20)  # empty, no legend
    page.mouse.click(*corner)  # a free point, off every sample
    assert _state(page, "path")["points"] == 4
    assert _state(page, "selected") is None  # drawing is not selecting
    page.keyboard.press("Backspace")  # undo the free point: the path runs through samples only
    assert _state(page, "path")["points"] == 3
    page.fill("#path-step", "0.4")
    page.dispatch_event("#path-step", "change")
    page.click("#path-render")
    page.wait_for_function(f"{HOOK}.state.path.rendered !== null")
    got = _state(page, "path")["rendered"]
    headers, wav = server.request("/api/models/m/synth", body={
        "ids": ids, "durations": [0.4] * 3, "glide": True, "grain": 0.5})
    want = json.loads(headers["x-render"])
    assert got["sample_ids"] == want["sample_ids"] and got["n_grains"] == want["n_grains"]
    assert got["duration"] == pytest.approx(1.2, abs=1e-3)
    assert got["bytes"] == len(wav)
    page.wait_for_function("window.plays.some(p => p.key === 'path')")
    with page.expect_download() as download:
        page.click("#path-download")
    assert download.value.suggested_filename == "path-m.wav"
    y, sr = sf.read(download.value.path(), dtype="float32")
    assert abs(len(y) / sr - 1.2) < 1e-3 and np.abs(y).max() > 0.01
    # a free point (off every sample) is sent as coordinates and rendered too
    page.mouse.click(*corner)
    assert _state(page, "path") == {"points": 4, "rendered": None}  # the old render is dropped
    page.click("#path-render")
    page.wait_for_function(f"{HOOK}.state.path.rendered !== null")
    assert _state(page, "path")["rendered"]["duration"] == pytest.approx(1.6, abs=1e-3)
    _screenshot(page, "path-rendered")
    page.wait_for_function(f"{HOOK}.playing() === null")  # (Esc would stop it first)
    page.keyboard.press("Escape")
    assert _state(page, "mode") == "explore"
    x, y = _positions(page, [ids[0]])[ids[0]]
    page.mouse.click(x, y)
    page.wait_for_function(f"{HOOK}.state.selected === {ids[0]}")
    assert _state(page, "path")["points"] == 4  # the path stays until cleared
    page.click("#path-clear")
    assert _state(page, "path")["points"] == 0


def test_a_path_is_drawn_by_dragging_and_the_map_does_not_turn(page, server):
    _open(page, server)
    a, b = _isolated(page, server, 2)
    (xa, ya), (xb, yb) = _positions(page, [a])[a], _positions(page, [b])[b]
    page.keyboard.press("p")
    page.mouse.move(xa, ya)
    page.mouse.down()
    for t in [i / 20 for i in range(1, 21)]:
        page.mouse.move(xa + t * (xb - xa), ya + t * (yb - ya))
    page.mouse.up()
    n = _state(page, "path")["points"]
    assert n >= min(5, max(2, int(((xb - xa) ** 2 + (yb - ya) ** 2) ** 0.5 / 16)))
    _frames_drawn(page, 2)  # the render loop has applied the controls since the drag
    assert _positions(page, [a])[a] == (xa, ya)  # drawing did not orbit the view
    page.click("#path-render")
    page.wait_for_function(f"{HOOK}.state.path.rendered !== null")
    rendered = _state(page, "path")["rendered"]
    assert rendered["duration"] == pytest.approx(0.5 * n, abs=1e-3)
    assert rendered["n_grains"] > 0
    page.wait_for_function(f"{HOOK}.playing() === null")  # (Esc would stop it first)
    page.keyboard.press("Escape")  # out of path mode, a drag turns the map again
    page.mouse.move(xa + 40, ya + 40)
    page.mouse.down()
    page.mouse.move(xa + 140, ya + 60, steps=5)
    page.mouse.up()
    page.wait_for_function("([id, x, y]) => { const p = window.soundatlas.screenPosition(id); "
                           "return p !== null && (p.x !== x || p.y !== y); }", arg=[a, xa, ya])


def test_a_rendering_of_a_path_since_changed_is_dropped_and_stopped(page, server):
    """The path changes while its rendering waits for the server (held back by holding its
    render lock): the page hangs up, so the server stops that render and frees its place in the
    queue, and nothing of it is offered as the path's."""
    _open(page, server)
    ids = _isolated(page, server, 3)
    page.keyboard.press("p")
    for sample_id in ids[:2]:
        x, y = _positions(page, [sample_id])[sample_id]
        page.mouse.click(x, y)
    before = server.get("/api/renders")
    lock = server.app.state.web.render_lock
    lock.acquire()
    try:
        with page.expect_event("requestfailed", lambda r: r.url.endswith("/synth")):
            page.click("#path-render")
            renders_until(server, waiting=before["waiting"] + 1)  # queued behind the lock
            x, y = _positions(page, [ids[2]])[ids[2]]
            page.mouse.click(x, y)  # a third point while the two-point path waits
        renders_until(server, waiting=before["waiting"], cancelled=before["cancelled"] + 1)
    finally:
        lock.release()
    assert _state(page, "path") == {"points": 3, "rendered": None}
    assert page.locator("#path-result").is_hidden()
    assert page.inner_text("#path-status") == ""  # not "Rendering…" of a path that changed
    page.click("#path-render")
    page.wait_for_function(f"{HOOK}.state.path.rendered !== null")
    assert _state(page, "path")["rendered"]["duration"] == pytest.approx(1.5, abs=1e-3)
    assert server.get("/api/renders")["completed"] == before["completed"] + 1


def test_mosaic_this_rebuilds_an_upload_from_the_library(page, server, mapped):
    import soundfile as sf

    _open(page, server)
    with Atlas.open(mapped) as atlas:
        path = atlas.library / atlas.samples()[5].path
    page.set_input_files("#query-file", str(path))
    page.wait_for_function(f"{HOOK}.state.query !== null")
    assert page.is_checked("#mosaic-self")
    page.click("#query-mosaic")
    page.wait_for_function(f"{HOOK}.state.mosaic !== null")
    mosaic = _state(page, "mosaic")
    assert mosaic["selfExcluded"] == 1  # the library holds the same sound: left out
    assert mosaic["duration"] == pytest.approx(sf.info(path).duration, abs=0.01)
    assert mosaic["n_samples_used"] >= 1
    with page.expect_download() as download:
        page.click("#mosaic-download")
    assert download.value.suggested_filename == f"mosaic-{path.stem}.wav"
    assert sf.info(download.value.path()).duration == pytest.approx(mosaic["duration"], abs=1e-3)
    page.click("#query-clear")
    assert _state(page, "mosaic") is None and page.locator("#mosaic-result").is_hidden()


def test_live_control_over_osc_both_ways(page, mapped):
    """Hover, click and playback go out as OSC; OSC coming in moves a cursor to the nearest
    sample and plays it, plays or selects by id."""
    import numpy as np
    from oscpeer import Receiver
    from pythonosc.udp_client import SimpleUDPClient

    with Receiver() as rx, ThreadedServer(create_app(mapped, osc_out=f"127.0.0.1:{rx.port}",
                                                     osc_in="127.0.0.1:0")) as server:
        port = int(server.get("/api/atlas")["osc"]["in"].rsplit(":", 1)[1])
        _open(page, server)
        page.wait_for_function(f"{HOOK}.state.osc.connected")
        a, b = _isolated(page, server, 2)
        with Atlas.open(mapped) as atlas:
            paths = {r.id: r.path for r in atlas.samples()}
            ids, points = atlas.points(atlas.model("m").id)
        point = dict(zip(ids.tolist(), points))
        # out: hovering a plays it; both go out with its path and coordinates
        x, y = _positions(page, [a])[a]
        page.mouse.move(x, y)
        args = rx.until("/soundatlas/hover")
        assert args[:2] == (a, paths[a])
        np.testing.assert_allclose(args[2:], point[a], rtol=1e-6)
        assert rx.until("/soundatlas/play")[:2] == (a, paths[a])
        page.mouse.click(x, y)
        assert rx.until("/soundatlas/select")[:2] == (a, paths[a])
        # in: a cursor at b's point (plus a little) lands on b and plays it
        osc = SimpleUDPClient("127.0.0.1", port)
        osc.send_message("/soundatlas/cursor", [float(v) + 1e-4 for v in point[b]])
        page.wait_for_function(f"{HOOK}.state.osc.cursor !== null")
        assert _state(page, "osc")["cursor"]["id"] == b
        page.wait_for_function(f"{HOOK}.state.lastPlayed === {b}")
        _screenshot(page, "osc-cursor")
        # a cursor in [0, 1] of the map's box: the corner (0, 0, 0) is the box's lowest corner,
        # and lands on the sample nearest it (the page's world is the map scaled alike on every
        # axis, so nearest there is nearest on the map)
        osc.send_message("/soundatlas/cursor/norm", [0.0, 0.0, 0.0])
        page.wait_for_function(f"{HOOK}.state.osc.received >= 2")
        lo = points.min(axis=0)
        want = min(point, key=lambda i: float(np.linalg.norm(point[i] - lo)))
        assert _state(page, "osc")["cursor"]["id"] == want
        # a cursor with the wrong number of coordinates is named, and moves nothing
        osc.send_message("/soundatlas/cursor", [0.1, 0.2])
        page.wait_for_function(f"{HOOK}.state.osc.error !== null")
        assert "2 coordinates" in _state(page, "osc")["error"]
        assert _state(page, "osc")["cursor"]["id"] == want
        osc.send_message("/soundatlas/select", a)
        page.wait_for_function(f"{HOOK}.state.selected === {a}")
        osc.send_message("/soundatlas/nowhere", [1])
        page.wait_for_function(f"{HOOK}.state.osc.error.includes('nowhere')")
        assert "/soundatlas/nowhere" in _state(page, "osc")["error"]
        assert "/soundatlas/nowhere" in page.inner_text("#status")
        page.goto("about:blank")  # the page lets go of the event stream before the server stops


def test_box_and_lasso_selection_and_export_as_m3u_csv_zip(page, server, mapped):
    _open(page, server)
    pos = _positions(page, _embedded_ids(server, "m"))
    # a box over the left part of the map, its right edge in the widest gap between points
    xs = sorted(x for x, _ in pos.values())
    mid = len(xs) // 2
    gap, edge = max((xs[i + 1] - xs[i], (xs[i + 1] + xs[i]) / 2) for i in range(mid - 8, mid + 8))
    assert gap > 2
    top = min(y for _, y in pos.values()) - 10
    bottom = max(y for _, y in pos.values()) + 10
    left = xs[0] - 10
    want = sorted(i for i, (x, _) in pos.items() if x < edge)
    page.keyboard.down("Shift")
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move(edge, bottom, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert _state(page, "selection") == want
    assert page.inner_text("#selection-count").startswith(f"{len(want)} samples")

    with Atlas.open(mapped) as atlas:
        paths = {r.id: r.path for r in atlas.samples(want)}
        root = atlas.library
    downloads = {}
    for fmt in ("m3u", "csv", "zip"):
        with page.expect_download() as download:
            page.click(f"#export-{fmt}")
        downloads[fmt] = download.value
        assert download.value.suggested_filename == f"soundatlas-{len(want)}-samples.{fmt}"
    m3u = Path(downloads["m3u"].path()).read_text().splitlines()
    assert m3u[0] == "#EXTM3U"
    assert [line for line in m3u if not line.startswith("#")] == [
        os.path.join(root, paths[i]) for i in want]
    rows = list(csv.DictReader(io.StringIO(Path(downloads["csv"].path()).read_text())))
    assert [int(r["id"]) for r in rows] == want
    assert [r["path"] for r in rows] == [paths[i] for i in want]
    with zipfile.ZipFile(downloads["zip"].path()) as z:
        assert z.testzip() is None
        assert sorted(z.namelist()) == sorted(paths.values())

    # a lasso instead: a triangle with its tip at the right of the map
    page.select_option("#select-shape", "lasso")
    triangle = [(left, top), (xs[-1] + 10, (top + bottom) / 2), (left, bottom)]
    want = sorted(i for i, (x, y) in pos.items() if _in_polygon(x, y, triangle))
    assert 0 < len(want) < len(pos)
    page.keyboard.down("Shift")
    page.mouse.move(*triangle[0])
    page.mouse.down()
    for x, y in triangle[1:] + triangle[:1]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert _state(page, "selection") == want
    page.click("#selection-clear")
    assert _state(page, "selection") == [] and page.is_disabled("#export-zip")


def _served(server, model: str):
    """(ids, points n x dims, headers) of a model's points as the server sends them."""
    import numpy as np

    headers, body = server.request(f"/api/models/{model}/points")
    n, dims = int(headers["x-count"]), int(headers["x-dims"])
    ids = np.frombuffer(body[: 4 * n], dtype="<i4")
    return ids, np.frombuffer(body[4 * n:], dtype="<f4").reshape(n, dims), headers


def _up_follows(page, ids, values) -> float:
    """Correlation of ``values`` with how high each point is drawn (the 2-D view, xy plane)."""
    import numpy as np

    pos = _positions(page, [int(i) for i in ids])
    return float(np.corrcoef(values, [-pos[int(i)][1] for i in ids])[0, 1])


def test_switching_the_model_moves_the_points(page, server):
    _open(page, server)
    ids = _embedded_ids(server, "m")
    before = _positions(page, ids)
    assert page.locator("#pitch-axis").is_hidden()
    page.select_option("#model", "p")
    page.wait_for_function(f"{HOOK}.state.model === 'p' && !{HOOK}.state.moving")
    assert _state(page, "nPoints") == len(_embedded_ids(server, "p")) == 48
    after = _positions(page, ids)
    moved = [((before[i][0] - after[i][0]) ** 2 + (before[i][1] - after[i][1]) ** 2) ** 0.5
             for i in ids]
    assert sorted(moved)[len(moved) // 2] > 5  # most points went somewhere else
    # 'p' has a measured pitch axis, its last coordinate: the page says so and draws it upwards
    assert page.locator("#pitch-axis").is_visible()
    p_ids, p_points, headers = _served(server, "p")
    assert headers["x-pitch-axis"] == "2"
    # the 2-D view (key 2) looks down an axis; 3 goes back
    page.keyboard.press("2")
    assert _state(page, "view") == "2d"
    assert page.get_attribute("#view-2d", "aria-pressed") == "true"
    assert _up_follows(page, p_ids, p_points[:, 2]) > 0.999
    page.select_option("#model", "m")  # without one, up is the second coordinate
    page.wait_for_function(f"{HOOK}.state.model === 'm' && !{HOOK}.state.moving")
    assert page.locator("#pitch-axis").is_hidden()
    m_ids, m_points, headers = _served(server, "m")
    assert "x-pitch-axis" not in headers
    assert _up_follows(page, m_ids, m_points[:, 1]) > 0.999
    page.keyboard.press("3")
    assert _state(page, "view") == "3d"


def test_an_atlas_without_embeddings_shows_the_command_that_makes_them(page, bare_server):
    hint = bare_server.get("/api/atlas")["hint"]
    page.goto(bare_server.url + "/")
    page.wait_for_selector("#empty:visible")
    assert page.inner_text("#hint") == hint
    assert "soundatlas map" in hint
    assert page.locator("#loading").is_hidden()
    state = page.evaluate(f"{HOOK}.state")
    assert state["ready"] is False and state["hint"] == hint and state["nPoints"] == 0


def test_stars_tags_notes_and_collections_from_the_page(page, mapped, tmp_path, console):
    """The page writes the user's layer: a star (key s), a tag (key t), a note, tags and a
    collection for a selection, a collection shown as a filter, played through and exported;
    tags colour the map like any label. The atlas holds every write afterwards."""
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        ids = _embedded_ids(srv, "m")
        first, second = ids[0], ids[1]
        srv.post("/api/collections/duo/add?create=true", {"ids": [second, first]})
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({first})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {first}")
        page.locator("#map canvas").focus()
        page.keyboard.press("s")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.starred === true")
        page.keyboard.press("t")
        page.keyboard.type("bright")
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"{HOOK}.state.curation.selected?.tags.includes('bright')")
        page.fill("#sample-note", "for the chorus")
        page.locator("#sample-note").dispatch_event("change")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.note === 'for the chorus'")
        # the selection: tag all, a new collection of it
        picked = page.evaluate(f"{HOOK}.selectBox(0, 0, 2000, 2000)")
        assert len(picked) == len(ids)
        page.fill("#selection-tag", "mood:dark")
        page.click("#selection-tag-add")
        page.wait_for_function(f"{HOOK}.state.curation.tags['mood:dark'] === {len(ids)}")
        page.fill("#collection-name", "all")
        page.click("#collection-from-selection")
        page.wait_for_function(f"{HOOK}.state.curation.collections.includes('all')")
        page.wait_for_function("document.getElementById('status').textContent === "
                               f"'Collection all: {len(ids)} sounds added'")
        page.evaluate(f"{HOOK}.select(null)")
        # tags are labels: they colour the map
        page.wait_for_function("[...document.querySelectorAll('#colour-by option')]"
                               ".some(o => o.value === 'mood')")
        page.select_option("#colour-by", "mood")
        page.wait_for_function(f"{HOOK}.state.colourBy === 'mood'")
        assert "dark" in page.inner_text("#legend")
        # a collection as a filter, played through, exported
        assert page.locator("#collection-list li").count() == 2
        page.select_option("#filter-collection", "duo")
        page.wait_for_function(f"{HOOK}.state.matches === 2")
        page.click("#collection-list li[data-name='duo'] button[aria-label='Play duo']")
        page.wait_for_function(f"{HOOK}.state.curation.playing?.index === 1", timeout=30_000)
        page.wait_for_function(f"{HOOK}.state.curation.playing === null", timeout=30_000)
        assert page.evaluate(f"{HOOK}.state.lastPlayed") == first  # the second of duo
        with page.expect_download() as download:
            page.click("#collection-list li[data-name='duo'] button:text('ZIP')")
        with zipfile.ZipFile(download.value.path()) as z, Atlas.open(atlas_dir) as atlas:
            paths = {r.id: r.path for r in atlas.samples([first, second])}
            assert z.namelist() == [paths[second], paths[first]]
        # a collection that cannot be read is named in the status line, by export and by play
        console.expected.append("status of 500")
        page.route("**/api/collections/duo", lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "duo broke"}'))
        for button in ("button:text('CSV')", "button[aria-label='Play duo']"):
            page.evaluate("document.getElementById('status').textContent = ''")
            page.click(f"#collection-list li[data-name='duo'] {button}")
            page.wait_for_function("document.getElementById('status').textContent === 'duo broke'")
        assert page.evaluate(f"{HOOK}.state.curation.playing") is None
        page.unroute("**/api/collections/duo")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops
    with Atlas.open(atlas_dir, write=True) as atlas:
        cur = atlas.curation_of([first])[first]
        assert cur["starred"] and cur["tags"] == ["bright", "mood:dark"]
        atlas.remove_samples([second])  # as index does when a file is deleted: its items stay
    with ThreadedServer(create_app(atlas_dir)) as srv:
        _open(page, srv)
        page.wait_for_function(f"{HOOK}.state.curation.missing === 1")
        assert "1 file no longer in the library" in page.inner_text("#curation-missing")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")
    with Atlas.open(atlas_dir) as atlas:
        assert cur["note"] == "for the chorus" and cur["collections"] == ["all", "duo"]
        assert len(atlas.collection_members("all")) == len(ids)


def test_a_filter_on_a_tag_the_user_took_away_shows_no_match_not_an_error(page, mapped, tmp_path):
    """Filtering on a tag's key (mood:dark), then removing the last such tag: the filter matches
    nothing, and the page says so instead of showing the server's 'no label' error."""
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        first = _embedded_ids(srv, "m")[0]
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({first})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {first}")
        page.locator("#map canvas").focus()
        page.keyboard.press("t")
        page.keyboard.type("mood:dark")
        page.keyboard.press("Enter")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.tags.includes('mood:dark')")
        page.wait_for_function("[...document.querySelectorAll('#filter-key option')]"
                               ".some(o => o.value === 'mood')")
        page.select_option("#filter-key", "mood")
        page.select_option("#filter-value", "dark")
        page.click("#filter-add")
        page.wait_for_function(f"{HOOK}.state.matches === 1")
        page.click("#sample-tags button[aria-label='Remove tag mood:dark']")
        page.wait_for_function(f"{HOOK}.state.matches === 0")
        assert "0 of" in page.inner_text("#match-count")
        assert not page.evaluate("document.getElementById('status').classList.contains('error')"), \
            page.inner_text("#status")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")


def test_a_read_only_server_shows_tags_without_the_controls_that_change_them(page, mapped,
                                                                              tmp_path):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        first = int(atlas.sample_ids()[0])
        atlas.tag([first], add=["kept"])
    with ThreadedServer(create_app(atlas_dir, read_only=True)) as srv:
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({first})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.tags.includes('kept')")
        assert page.evaluate(f"{HOOK}.state.curation.writable") is False
        assert page.is_visible("#curation-read-only") and page.is_disabled("#star-selected")
        assert not page.is_visible("#tag-input") and not page.is_visible("#selection-tag")
        page.keyboard.press("s")  # does nothing on a read-only server
        page.keyboard.press("t")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.curation_of([first])[first]["starred"] is False


def test_a_sample_whose_feature_file_is_damaged_shows_its_path_and_names_the_repair(
        page, mapped, tmp_path, console):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir) as atlas:
        sid, file = atlas.conn.execute("SELECT s.id, g.file FROM samples s JOIN segments g"
                                       " ON g.id = s.segment ORDER BY s.id").fetchone()
    (atlas_dir / "features" / file).write_bytes(b"not an array")
    console.expected.append("409")  # the browser logs the image the server refused
    with ThreadedServer(create_app(atlas_dir)) as srv:
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({sid})")
        # the path on the map is drawn whole; the CQT image is hidden and the status says why
        page.wait_for_function(f"{HOOK}.state.trajectory?.id === {sid}")
        page.wait_for_function("document.querySelector('#status').textContent"
                               f".includes({json.dumps(file)})")
        text = page.inner_text("#status")
        assert "check --atlas" in text and "--repair" in text, text
        assert not page.is_visible("#cqt")
        # a healthy sample next: its image shows, and the message about the other one goes
        with Atlas.open(atlas_dir) as atlas:
            healthy = atlas.conn.execute("SELECT s.id FROM samples s JOIN segments g ON"
                                         " g.id = s.segment WHERE g.file != ?", (file,)).fetchone()[0]
        page.evaluate(f"{HOOK}.select({healthy})")
        # the image's load handler shows it and takes the message away in one step: no wait
        # for the status line's own timer (12 s) could pass this
        page.wait_for_function("!document.querySelector('#cqt').hidden")
        assert page.inner_text("#status") == ""
        page.goto("about:blank")


def test_a_label_suggested_from_the_map_is_accepted_with_one_key(page, mapped, tmp_path):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        ids = atlas.sample_ids().tolist()
        labels = atlas.labels_of(ids)
        bare = ids[::7]  # these lose their instrument
        for sid in bare:
            labels[sid].pop("instrument")
        atlas.replace_labels(labels)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        _open(page, srv)
        page.select_option("#colour-by", "instrument")
        page.wait_for_function(f"{HOOK}.state.colourBy === 'instrument'")
        page.evaluate(f"{HOOK}.select({bare[0]})")
        page.wait_for_function(f"{HOOK}.state.curation.suggestion?.id === {bare[0]}")
        value = page.evaluate(f"{HOOK}.state.curation.suggestion.value")
        assert value in CLASSES and page.is_visible("#sample-suggestion")
        page.locator("#map canvas").focus()
        page.keyboard.press("y")
        page.wait_for_function(
            f"{HOOK}.state.curation.selected?.tags.includes('instrument:{value}')")
        # the selection: every sample; the suggestions for the rest, accepted at once
        page.evaluate(f"{HOOK}.select(null)")
        picked = page.evaluate(f"{HOOK}.selectBox(0, 0, 2000, 2000)")
        assert len(picked) == len(ids)
        answer = srv.post("/api/models/m/suggest", {"ids": bare[1:],
                                                    "label": "instrument"})["suggestions"]
        far = {s["id"] for s in answer if s["far"]}  # shown, not accepted at once
        page.click("#selection-suggest")
        page.wait_for_function(
            f"{HOOK}.state.curation.selectionSuggestions?.n === {len(bare) - 1 - len(far)}")
        assert _state(page, "curation")["selectionSuggestions"]["far"] == len(far)
        page.keyboard.press("y")
        page.wait_for_function(f"{HOOK}.state.curation.selectionSuggestions === null")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops
    with Atlas.open(atlas_dir) as atlas:
        have = atlas.labels("instrument")
        assert set(bare) - far <= set(have) and not far & set(have) and have[bare[0]] == value
        # most come back right (the tiny models of this fixture are trained on instrument)
        truth = {sid: lab["instrument"] for sid, lab in labels.items() if "instrument" in lab}
        assert all(have[s] in CLASSES for s in bare)
        assert not atlas.curation_of(bare)[bare[0]]["suggested"]  # accepted: the user's
        assert len(truth) == len(ids) - len(bare)


def test_a_suggestion_unlike_every_labelled_sample_says_so(page, mapped, tmp_path):
    """Flutes alone carry a mood: a trombone gets one from the vote all the same, and the panel
    says its sound is like none of theirs."""
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        records = atlas.samples(atlas.sample_ids().tolist())
        flutes = [r.id for r in records if "flute" in r.path]
        others = [r.id for r in records if "trombone" in r.path]
        atlas.tag(flutes, add=["mood:airy"])
    with ThreadedServer(create_app(atlas_dir)) as srv:
        answer = srv.post("/api/models/m/suggest", {"ids": others, "label": "mood"})[
            "suggestions"]
        far = [s["id"] for s in answer if s["far"]]
        assert far, answer  # trombones lie beyond the flutes' reach
        _open(page, srv)
        page.select_option("#colour-by", "mood")
        page.wait_for_function(f"{HOOK}.state.colourBy === 'mood'")
        page.evaluate(f"{HOOK}.select({far[0]})")
        page.wait_for_function(f"{HOOK}.state.curation.suggestion?.id === {far[0]}")
        text = page.inner_text("#sample-suggestion-text")
        assert "Suggested mood: airy" in text and "unlike every sample labelled with mood" in text
        assert "far" in page.get_attribute("#sample-suggestion", "class")
        page.evaluate(f"{HOOK}.select({flutes[0]})")  # labelled: no suggestion
        page.wait_for_function("document.getElementById('sample-suggestion').hidden")
        page.goto("about:blank")


def test_a_kit_swap_passes_over_the_same_file_at_another_path(page, mapped, tmp_path):
    """A lane's sound copied into another folder of the library: its copy is its nearest
    neighbour (distance 0, marked "same file" in the page's list), and the swap (key n) takes
    the next sound, not the copy."""
    from conftest import copied_with_copies

    with Atlas.open(mapped) as atlas:
        rec = atlas.samples()[5]
    atlas_dir = copied_with_copies(mapped, tmp_path, [rec.path])
    copy = f"copies/{Path(rec.path).name}"
    with Atlas.open(atlas_dir) as atlas:
        copy_id = atlas.lookup_paths([copy])[copy][0]
    with ThreadedServer(create_app(atlas_dir)) as srv:
        near = json.loads(srv.request(f"/api/models/m/neighbours/{rec.id}?k=20")[1])
        assert near["neighbours"][0]["id"] == copy_id and near["neighbours"][0]["copy"]
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({rec.id})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {rec.id}")
        page.wait_for_function(f"{HOOK}.state.neighbours.includes({copy_id})")
        marked = page.locator(f"#neighbours li[data-id='{copy_id}'] .copy")
        assert marked.inner_text() == "same file"
        # a tag on it reaches its copy (kept by content), and the status line says so
        page.fill("#tag-input", "punchy")
        page.press("#tag-input", "Enter")
        page.wait_for_function("document.getElementById('status').textContent === "
                               "'Tagged 1 sample (and 1 copy of its sound elsewhere) punchy'")
        page.click("#kit-add-selected")
        page.click("#kit-lanes li[data-lane='0'] .name")
        page.locator("#map canvas").focus()
        page.keyboard.press("n")
        page.wait_for_function(f"{HOOK}.state.kit.swaps === 1")
        swapped = _state(page, "kit")["lanes"][0]["id"]
    others = [n["id"] for n in near["neighbours"] if not n["copy"]]
    assert swapped == others[0], (swapped, near["neighbours"][:3])


def test_a_kit_is_built_played_swapped_exported_and_imported(page, mapped, tmp_path):
    """The kit builder: lanes added from the panel, steps set, played on the audio clock, a
    lane swapped for its nearest neighbour while it plays (key n), exported as a zip whose MIDI
    file a MIDI library reads back, and its kit.json imported again."""
    import mido

    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        ids = _embedded_ids(srv, "m")
        _open(page, srv)
        for sid in ids[:3]:
            page.evaluate(f"{HOOK}.select({sid})")
            page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {sid}")
            page.click("#kit-add-selected")
        assert [lane["id"] for lane in _state(page, "kit")["lanes"]] == ids[:3]
        for lane, steps in ((0, (0, 4, 8, 12)), (1, (4, 12)), (2, (2, 6, 10, 14))):
            for s in steps:
                page.click(f"#kit-lanes li[data-lane='{lane}'] .step[data-step='{s}']")
        page.fill("#kit-tempo", "150")
        page.locator("#kit-tempo").dispatch_event("change")
        page.click("#kit-play")
        page.wait_for_function(f"{HOOK}.state.kit.scheduled >= 12", timeout=30_000)
        first = ids[0]
        page.click("#kit-lanes li[data-lane='0'] .name")  # the lane key n swaps
        page.locator("#map canvas").focus()
        page.keyboard.press("n")
        page.wait_for_function(f"{HOOK}.state.kit.swaps === 1")
        swapped = _state(page, "kit")["lanes"][0]["id"]
        near = json.loads(srv.request(f"/api/models/m/neighbours/{first}?k=20")[1])
        assert swapped != first and swapped in [n["id"] for n in near["neighbours"]]
        assert _state(page, "kit")["playing"] is True  # swapped while it played
        page.click("#kit-play")
        assert _state(page, "kit")["playing"] is False
        with page.expect_download() as download:
            page.click("#kit-export")
        with zipfile.ZipFile(download.value.path()) as z:
            assert [n for n in z.namelist() if not n.startswith("samples/")] == [
                "pattern.mid", "kit.json"]
            assert len([n for n in z.namelist() if n.startswith("samples/")]) == 3
            midi = mido.MidiFile(file=io.BytesIO(z.read("pattern.mid")))
            described = json.loads(z.read("kit.json"))
        hits = [m for m in midi.tracks[0] if m.type == "note_on"]
        assert len(hits) == 10
        tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
        assert round(mido.tempo2bpm(tempo)) == 150
        assert [lane["id"] for lane in described["lanes"]] == [swapped, *ids[1:3]]
        # a fresh page imports the kit again
        kit_json = tmp_path / "kit.json"
        kit_json.write_text(json.dumps(described))
        page.click("#kit-clear")
        assert _state(page, "kit")["lanes"] == []
        page.set_input_files("#kit-import", str(kit_json))
        page.wait_for_function(f"{HOOK}.state.kit.lanes.length === 3")
        kit = _state(page, "kit")
        assert [lane["id"] for lane in kit["lanes"]] == [swapped, *ids[1:3]]
        assert [s for s, on in enumerate(kit["lanes"][1]["steps"]) if on] == [4, 12]
        assert kit["tempo"] == 150
        # suggest a kit: one sound from each of 4 regions of the map
        page.select_option("#kit-size", "4")
        page.click("#kit-suggest")
        page.wait_for_function(f"{HOOK}.state.kit.lanes.length === 4")
        assert len({lane["id"] for lane in _state(page, "kit")["lanes"]}) == 4
        _screenshot(page, "kit_builder")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops


def test_an_imported_kit_finds_each_sound_by_its_path_when_its_id_names_another_file(
        page, mapped, tmp_path):
    """A kit.json imported after the library changed: a lane's file deleted (SQLite gives its
    id, the largest, to the next new file) and back under a new id is found by its path, and the
    page says so; a lane whose file is gone is named and nothing is imported."""
    from conftest import write_tone

    from soundatlas.indexing import index_library

    lib, atlas_dir = tmp_path / "lib", tmp_path / "atlas"
    shutil.copytree(mapped.parent / "lib", lib)
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        atlas.set_meta("library", str(lib.resolve()))
        paths = {r.id: r.path for r in atlas.samples()}
    last, first = max(paths), min(paths)
    kit = {"name": "reused", "tempo": 100, "swing": 0.5,
           "lanes": [{"id": sid, "steps": [s % 4 == 0 for s in range(16)], "volume": 0.8}
                     for sid in (last, first)]}
    with ThreadedServer(create_app(atlas_dir)) as srv:
        with zipfile.ZipFile(io.BytesIO(srv.request("/api/kits/export", body=kit)[1])) as z:
            described = json.loads(z.read("kit.json"))
    assert [lane["path"] for lane in described["lanes"]] == [paths[last], paths[first]]
    kept = tmp_path / "kept.wav"
    shutil.move(lib / paths[last], kept)
    index_library(lib, atlas_dir=atlas_dir, n_jobs=1)  # its id is free again
    write_tone(lib / "added" / "tone.wav", 330.0, seconds=0.5)
    index_library(lib, atlas_dir=atlas_dir, n_jobs=1)  # and another file's
    shutil.move(kept, lib / paths[last])
    index_library(lib, atlas_dir=atlas_dir, n_jobs=1)  # back, under a new id
    with Atlas.open(atlas_dir) as atlas:
        now = {r.path: r.id for r in atlas.samples()}
    assert now["added/tone.wav"] == last and now[paths[last]] == last + 1
    with ThreadedServer(create_app(atlas_dir)) as srv:
        _open(page, srv)
        kit_json = tmp_path / "kit.json"
        kit_json.write_text(json.dumps(described))
        page.set_input_files("#kit-import", str(kit_json))
        page.wait_for_function(f"{HOOK}.state.kit.lanes.length === 2")
        assert [lane["id"] for lane in _state(page, "kit")["lanes"]] == [last + 1, first]
        said = page.inner_text("#status")
        assert f"lane 1: {paths[last]} is now sample {last + 1} (was {last})" in said, said
        described["lanes"][1]["path"] = "gone/nothing.wav"  # its id is still a sample's
        gone_json = tmp_path / "gone.json"
        gone_json.write_text(json.dumps(described))
        page.set_input_files("#kit-import", str(gone_json))
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        said = page.inner_text("#status")
        assert "Cannot import gone.json" in said and "lane 2: gone/nothing.wav" in said, said
        assert [lane["id"] for lane in _state(page, "kit")["lanes"]] == [last + 1, first]
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops


def test_loops_are_filtered_by_a_tempo_range_and_a_key_with_its_relative(page, tmp_path):
    import soundfile as sf

    from soundatlas.artifact import resolve_model
    from soundatlas.demo.loops import PROGRAMS, loop_events
    from soundatlas.demo.render import NoteSynth
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import cqt_for_model, index_library

    lib = tmp_path / "lib"
    lib.mkdir()
    with NoteSynth(sample_rate=16000) as synth:
        for name, tempo, key in (("a", 90.0, "C minor"), ("b", 120.0, "D# major"),
                                 ("c", 90.0, "F minor")):
            events, seconds = loop_events(tempo, key)
            sf.write(lib / f"{name}.wav", synth.render_events(events, seconds, PROGRAMS), 16000,
                     subtype="PCM_16")
    index_library(lib, n_jobs=1, params=cqt_for_model(lib, None, "default"))
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        artifact, reg = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, reg))
        ids = {r.path: r.id for r in atlas.samples()}
    with ThreadedServer(create_app(lib / ".soundatlas")) as srv:
        _open(page, srv)
        assert page.is_visible("#loop-filters")
        page.fill("#tempo-min", "100")
        page.wait_for_function(f"{HOOK}.state.matches === 1")
        assert _list_ids(page, "#match-list") == [ids["b.wav"]]
        page.fill("#tempo-min", "")
        page.select_option("#filter-key-of-loop", "C minor")
        page.wait_for_function(f"{HOOK}.state.matches === 1")
        page.check("#filter-relative")
        page.wait_for_function(f"{HOOK}.state.matches === 2")
        assert sorted(_list_ids(page, "#match-list")) == sorted([ids["a.wav"], ids["b.wav"]])
        page.click("#filter-clear")
        page.wait_for_function(f"{HOOK}.state.matches === null")
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops


# -- answers that fail, or arrive after a newer question ------------------------------------------


def test_a_kit_stopped_while_its_sounds_load_stays_stopped_and_a_lane_that_cannot_load_is_named(
        page, server, console):
    """Play pressed twice and then Stop, all before the kit's sounds have loaded: nothing plays
    afterwards (two starts each left a timer that Stop never saw). A lane whose sound the
    server cannot give is named, and the other lanes play."""
    ids = _embedded_ids(server, "m")
    console.expected.append("status of 404")  # Chromium logs the refused request
    page.route(f"**/api/samples/{ids[1]}/audio*", lambda route: route.fulfill(
        status=404, content_type="application/json", body='{"error": "no such file"}'))
    _open(page, server)
    for sid in ids[:2]:
        page.evaluate(f"{HOOK}.select({sid})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {sid}")
        page.click("#kit-add-selected")
    page.click("#kit-lanes li[data-lane='0'] .step[data-step='0']")
    page.click("#kit-lanes li[data-lane='1'] .step[data-step='0']")
    running = page.evaluate(f"""async () => {{
        const kit = {HOOK}.kit;
        const first = kit.play(), second = kit.play();  // the second press finds the first loading
        kit.stop();
        await Promise.all([first, second]);  // both have done all they will
        return kit.timer !== null || {HOOK}.state.kit.playing;
    }}""")
    assert running is False
    assert page.inner_text("#kit-play") == "▶ Play"
    page.click("#kit-play")
    page.wait_for_function(f"{HOOK}.state.kit.scheduled >= 2", timeout=30_000)
    assert f"1 of the kit's sounds cannot be played: sample {ids[1]}: no such file" \
        in page.inner_text("#status")
    page.click("#kit-play")
    assert _state(page, "kit")["playing"] is False


def test_a_map_or_colouring_answered_after_a_later_choice_is_dropped(page, server):
    """The map of p asked for, then m: p's points, held back until m is shown, do not replace
    it; the same for colours asked by one label and then another."""
    _open(page, server)
    _hold_fetches(page, r"/api/models/p/points|/api/labels/pitch")
    page.select_option("#model", "p")
    page.select_option("#model", "m")
    page.select_option("#colour-by", "pitch")
    page.select_option("#colour-by", "articulation")
    page.wait_for_function(f"{HOOK}.state.colourBy === 'articulation'")
    page.evaluate("window.releaseHeld()")
    page.wait_for_function("window.heldAnswered === 2")  # both held answers have come
    _frames_drawn(page, 5)  # and the page has read them (a few tasks) and drawn since
    assert _state(page, "model") == "m" and page.input_value("#model") == "m"
    assert _state(page, "colourBy") == "articulation"
    assert page.input_value("#colour-by") == "articulation"


def test_a_page_whose_curation_or_first_map_cannot_load_opens_another_and_says_what_is_missing(
        page, server, console):
    console.expected.append("status of 409")
    console.expected.append("status of 500")
    page.route("**/api/curation*", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": "curation broke"}'))
    page.route("**/api/models/m/points*", lambda route: route.fulfill(
        status=409, content_type="application/json", body='{"error": "m is damaged"}'))
    state = _open(page, server)
    assert state["ready"] and state["model"] == "p" and state["nPoints"] == 48
    message = page.inner_text("#status")
    assert "tags, stars and collections (curation broke)" in message
    assert "the map of m (m is damaged)" in message


def test_what_a_failed_request_leaves_is_not_another_ones_result(page, server, mapped, tmp_path,
                                                                console):
    """A failed upload takes the previous upload's result away (its buttons acted on the bad
    file); a failed search shows no stale matches, and its error goes once a search succeeds;
    Esc in a text field leaves it and keeps the selection; a hover on a sample without the
    colouring label shows no 'null'; a collection named '..' is refused in words."""
    console.expected += ["status of 400", "status of 500"]
    _open(page, server)
    with Atlas.open(mapped) as atlas:
        good = atlas.library / atlas.samples()[20].path
    page.set_input_files("#query-file", str(good))
    page.wait_for_function(f"{HOOK}.state.query !== null")
    bad = tmp_path / "notes.wav"
    bad.write_text("just some text")
    page.set_input_files("#query-file", str(bad))
    page.wait_for_selector("#query-error:visible")
    assert _state(page, "query") is None and page.locator("#query-result").is_hidden()
    assert _list_ids(page, "#query-neighbours") == []

    page.fill("#search", "tromb")
    page.wait_for_function(f"{HOOK}.state.matches === 16")
    page.keyboard.press("Escape")  # out of the field: the arrow keys walk what was found
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"{HOOK}.state.lastPlayed === {_list_ids(page, '#match-list')[0]}")
    page.route("**/api/samples?*", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": "search broke"}'))
    page.fill("#search", "flute")
    page.wait_for_function("document.getElementById('status').textContent === 'search broke'")
    assert _state(page, "matches") is None and _state(page, "dimmed") == 0
    page.unroute("**/api/samples?*")
    page.fill("#search", "violin")
    page.wait_for_function(f"{HOOK}.state.matches === 16")
    assert page.inner_text("#status") == ""

    page.fill("#search", "")
    page.wait_for_function(f"{HOOK}.state.matches === null")
    ids = _embedded_ids(server, "m")
    page.evaluate(f"{HOOK}.select({ids[0]})")
    box = _map_box(page)
    page.evaluate(f"{HOOK}.selectBox({box['x']}, {box['y']}, {box['x'] + box['width']}, "
                  f"{box['y'] + box['height']})")
    selected = len(_state(page, "selection"))
    assert selected > 0
    page.focus("#search")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "search"
    assert len(_state(page, "selection")) == selected and _state(page, "selected") == ids[0]

    page.select_option("#colour-by", "")  # no label: the tooltip names the file alone
    page.wait_for_function(f"{HOOK}.state.colourBy === null")
    x, y = _positions(page, [ids[0]])[ids[0]]
    page.mouse.move(x, y)
    page.wait_for_selector("#tooltip:visible")
    assert "null" not in page.inner_text("#tooltip")

    page.fill("#collection-name", "..")
    page.click("#collection-from-selection")
    page.wait_for_function("document.getElementById('status').textContent.includes(\"'..'\")")
    assert "not '.' or '..'" in page.inner_text("#status")


def test_an_export_being_built_disables_its_buttons_and_says_so(page, server):
    """While the server builds an export (held back here), its buttons are disabled and the
    status line says what is being built: a second click does not build it twice."""
    _open(page, server)
    box = _map_box(page)
    page.evaluate(f"{HOOK}.selectBox({box['x']}, {box['y']}, {box['x'] + box['width']}, "
                  f"{box['y'] + box['height']})")
    n = len(_state(page, "selection"))
    assert n > 0 and page.locator("#export-m3u").is_enabled()
    _hold_fetches(page, r"/api/export$")
    with page.expect_download() as download:
        page.click("#export-m3u")
        page.wait_for_function("document.getElementById('export-zip').disabled")
        assert page.locator("#export-m3u").is_disabled()
        assert page.inner_text("#status") == f"Building the M3U of {n} samples…"
        page.evaluate("window.releaseHeld()")
    assert download.value.suggested_filename.endswith(".m3u")
    page.wait_for_function("!document.getElementById('export-m3u').disabled")
    assert page.locator("#export-zip").is_enabled()


def test_curation_acts_on_what_the_page_shows_now(page, mapped, tmp_path, console):
    """What the page writes goes to what it shows at that moment: a star pressed while a
    newly selected sample's neighbours load stars that sample, not the last one; a tag shows in
    its facts at once; a colouring that cannot be had leaves the menu on the map's colouring;
    suggestions for a selection go with it; the collection filter follows a rename and a
    delete; a collection plays on past a sample that cannot be had; a kit swap that fails says
    so; a write of more ids than the server takes at once goes in chunks it takes."""
    console.expected += ["status of 500", "status of 404"]
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        labels = atlas.labels_of(atlas.sample_ids().tolist())
        for sid in list(labels)[::7]:  # these lose their instrument: it can be suggested
            labels[sid].pop("instrument")
        atlas.replace_labels(labels)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        ids = _embedded_ids(srv, "m")
        a, b, c = ids[1], ids[2], ids[3]
        srv.post("/api/collections/duo/add?create=true", {"ids": [a, b]})
        srv.post("/api/collections/gap/add?create=true", {"ids": [b, c]})
        _open(page, srv)
        page.evaluate(f"{HOOK}.select({a})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {a}")
        _hold_fetches(page, r"/neighbours/")  # b's neighbours, until released
        page.evaluate(f"() => {{ {HOOK}.select({b}); }}")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {b}")
        page.locator("#map canvas").focus()
        page.keyboard.press("s")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.starred === true")
        page.evaluate("window.releaseHeld()")
        page.wait_for_function(f"{HOOK}.state.neighbours.length > 0")
        items = srv.get(f"/api/curation/items?ids={a},{b}")["items"]
        assert [item["starred"] for item in items] == [False, True]
        # a tag written shows in the sample's facts
        page.keyboard.press("t")
        page.keyboard.type("mood:dark")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.getElementById('sample-facts').textContent.includes('dark')")

        # a colouring that cannot be had: the menu shows the map's colouring
        page.route("**/api/labels/pitch", lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "labels broke"}'))
        before = _state(page, "colourBy")
        assert before == "instrument"
        page.select_option("#colour-by", "pitch")
        page.wait_for_function("document.getElementById('status').textContent === 'labels broke'")
        assert page.input_value("#colour-by") == before and _state(page, "colourBy") == before
        page.unroute("**/api/labels/pitch")

        # a selection's suggestions go when the selection changes
        page.select_option("#colour-by", "instrument")
        page.wait_for_function(f"{HOOK}.state.colourBy === 'instrument'")
        page.evaluate(f"{HOOK}.selectBox(0, 0, 2000, 2000)")
        page.click("#selection-suggest")
        page.wait_for_function(f"{HOOK}.state.curation.selectionSuggestions?.n > 0")
        page.evaluate(f"{HOOK}.selectBox(0, 0, 1, 1)")
        assert _state(page, "curation")["selectionSuggestions"] is None
        assert page.locator("#selection-suggestions").is_hidden()

        # the collection filter follows a rename and a delete
        page.select_option("#filter-collection", "duo")
        page.wait_for_function(f"{HOOK}.state.matches === 2")
        page.once("dialog", lambda dialog: dialog.accept("pair"))
        page.click("#collection-list li[data-name='duo'] button:text('Rename')")
        page.wait_for_function("document.getElementById('filter-chips').textContent"
                               ".includes('collection: pair')")
        assert page.input_value("#filter-collection") == "pair"
        assert _state(page, "matches") == 2
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#collection-list li[data-name='pair'] button:text('Delete')")
        page.wait_for_function(f"{HOOK}.state.matches === null")
        assert "collection:" not in page.inner_text("#filter-chips")

        # a collection plays on past a sample whose sound cannot be had
        page.route(f"**/api/samples/{b}/audio*", lambda route: route.fulfill(
            status=404, content_type="application/json", body='{"error": "gone"}'))
        page.click("#collection-list li[data-name='gap'] button[aria-label='Play gap']")
        page.wait_for_function(f"{HOOK}.state.lastPlayed === {c}", timeout=30_000)
        page.wait_for_function(f"{HOOK}.state.curation.playing === null", timeout=30_000)
        page.unroute(f"**/api/samples/{b}/audio*")

        # a kit swap that fails says so and changes nothing
        page.evaluate(f"{HOOK}.select({a})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {a}")
        page.click("#kit-add-selected")
        page.route("**/neighbours/**", lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "near broke"}'))
        page.click("#kit-lanes li[data-lane='0'] .name")
        page.locator("#map canvas").focus()
        page.keyboard.press("n")
        page.wait_for_function("document.getElementById('status').textContent"
                               ".includes('near broke')")
        assert _state(page, "kit")["lanes"][0]["id"] == a and not _state(page, "kit").get("swaps")
        page.unroute("**/neighbours/**")

        # more ids than one write takes: in chunks the server takes, in order
        sizes = page.evaluate("""async () => {
            const { inChunks } = await import('/static/js/curation.js');
            const ids = Array.from({ length: 250001 }, (_, i) => i);
            const seen = [];
            await inChunks({ status: () => {} }, ids,
                async (chunk, first) => { seen.push([chunk.length, chunk[0], first]); return {}; },
                'Testing');
            return seen;
        }""")
        assert sizes == [[100000, 0, True], [100000, 100000, False], [50001, 200000, False]]
        from soundatlas.web.routers.curation import MAX_IDS
        assert MAX_IDS == 100_000
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")  # nothing left asking this server before it stops


def test_a_sound_or_search_asked_for_anew_drops_the_request_it_replaces(page, server, console):
    """A sweep over a dense map asked for every point's sound, and each keystroke in the search
    box for every matching id, and the page waited for answers no one would see: the download
    of a sound not yet heard is dropped when another point is hovered, and a search running
    when the next one starts is dropped."""
    _open(page, server)
    a, b = _isolated(page, server, 2)
    (xa, ya), (xb, yb) = (_positions(page, [i])[i] for i in (a, b))
    held = []  # a's sound is never answered: it stays in flight until the page drops it
    page.route(f"**/api/samples/{a}/audio", lambda route: held.append(route))
    with page.expect_request(lambda r: r.url.endswith(f"/api/samples/{a}/audio")):
        page.mouse.move(xa, ya)
    with page.expect_event("requestfailed",
                           lambda r: r.url.endswith(f"/api/samples/{a}/audio")):
        page.mouse.move(xb, yb)
    page.wait_for_function(f"{HOOK}.state.lastPlayed === {b}")
    assert page.inner_text("#status") == ""  # dropped on purpose: no error shown
    page.unroute(f"**/api/samples/{a}/audio")

    page.route("**/api/samples?q=tromb*", lambda route: held.append(route))
    with page.expect_request(lambda r: "/api/samples?q=tromb" in r.url):
        page.fill("#search", "tromb")
    with page.expect_event("requestfailed", lambda r: "/api/samples?q=tromb" in r.url):
        page.fill("#search", "violin")
    page.wait_for_function(f"{HOOK}.state.matches === 16")
    assert page.inner_text("#status") == ""
    page.unroute("**/api/samples?q=tromb*")


def test_paths_analogies_and_uploads_act_on_what_is_shown_and_stop_when_told(
        page, server, mapped, console, tmp_path):
    """In path mode a click on the legend is not a waypoint and a double-click one waypoint;
    in analogy mode a double-click does not fill two slots; the seconds per point field shows
    the value used; Esc stops a rendered path before it leaves path mode, and clearing the
    path stops its sound; a new upload takes the last one's answer away at once; a new k
    lists as many nearest sounds for the upload."""
    _open(page, server)
    a, b, c = _isolated(page, server, 3)
    (xa, ya), (xb, yb) = (_positions(page, [i])[i] for i in (a, b))
    page.keyboard.press("p")
    legend = page.locator("#legend").bounding_box()
    assert legend is not None
    page.mouse.click(legend["x"] + legend["width"] / 2, legend["y"] + legend["height"] / 2)
    assert _state(page, "path")["points"] == 0
    page.mouse.dblclick(xa, ya)
    assert _state(page, "path")["points"] == 1
    (xa, ya), (xb, yb), (xc, yc) = _settled_positions(page, [a, b, c])  # flown to a
    page.mouse.click(xb, yb)
    page.fill("#path-step", "0.01")
    page.dispatch_event("#path-step", "change")
    assert page.input_value("#path-step") == "0.05"
    page.fill("#path-step", "5")  # 10 s of sound: Esc comes well before its end
    page.dispatch_event("#path-step", "change")
    page.click("#path-render")
    page.wait_for_function(f"{HOOK}.playing() === 'path'", timeout=60_000)
    page.locator("#map canvas").focus()
    page.keyboard.press("Escape")
    assert page.evaluate(f"{HOOK}.playing()") is None and _state(page, "mode") == "path"
    page.click("#path-play")
    page.wait_for_function(f"{HOOK}.playing() === 'path'")
    page.click("#path-clear")
    assert page.evaluate(f"{HOOK}.playing()") is None
    page.keyboard.press("Escape")
    assert _state(page, "mode") == "explore"

    _open(page, server)  # the view as it opens: no point flown off the canvas
    (xa, ya), (xb, yb), (xc, yc) = _settled_positions(page, [a, b, c])
    page.click("#analogy-mode")
    page.mouse.click(xa, ya)
    page.mouse.click(xb, yb)
    page.mouse.dblclick(xc, yc)  # its second click neither starts over nor fills a slot
    page.wait_for_function(f"{HOOK}.state.analogy !== null")
    assert "Pick another sample" in page.inner_text("#status")
    assert [_state(page, "analogy")[s] for s in "abc"] == [a, b, c]
    page.click("#analogy-mode")

    with Atlas.open(mapped) as atlas:
        first, second = (atlas.library / atlas.samples()[i].path for i in (5, 30))
    page.set_input_files("#query-file", str(first))
    page.wait_for_function(f"{HOOK}.state.query !== null")
    assert len(_list_ids(page, "#query-neighbours")) == 10
    _hold_fetches(page, r"/query")  # the next upload's answer, until released
    page.set_input_files("#query-file", str(second))
    page.wait_for_function(f"{HOOK}.state.query === null")
    assert page.locator("#query-result").is_hidden()
    page.evaluate("window.releaseHeld()")
    page.wait_for_function(f"{HOOK}.state.query !== null")
    assert _state(page, "query")["file"] == second.name
    page.evaluate(f"{HOOK}.select({a})")  # (k is in the sample panel)
    page.select_option("#k", "20")
    page.wait_for_function("document.querySelectorAll('#query-neighbours li').length === 20")


def test_a_double_click_or_f_flies_to_a_point(page, server):
    """A double-click on a point, and `f` for the selected sample, glide the view until the
    point is at the same place, the view's centre: the first point flown to moves there, and
    so does the second from wherever the first flight left it."""
    _open(page, server)
    ids = _isolated(page, server, 3)
    start = dict(zip(ids, _settled_positions(page, ids)))
    box = _map_box(page)
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    a = max(ids, key=lambda i: (start[i][0] - middle[0]) ** 2 + (start[i][1] - middle[1]) ** 2)
    page.mouse.dblclick(*start[a])
    (centre,) = _settled_positions(page, [a])
    assert abs(centre[0] - start[a][0]) + abs(centre[1] - start[a][1]) > 20  # it moved
    b = next(i for i in ids if i != a)
    (before,) = _settled_positions(page, [b])  # (None: off the map, zoomed in on a)
    assert before is None or abs(before[0] - centre[0]) + abs(before[1] - centre[1]) > 10
    page.evaluate(f"{HOOK}.select({b})")
    page.wait_for_function(f"{HOOK}.state.selected === {b}")
    page.locator("#map canvas").focus()
    page.keyboard.press("f")
    (after,) = _settled_positions(page, [b], visible=True)
    assert abs(after[0] - centre[0]) < 3 and abs(after[1] - centre[1]) < 3, (after, centre)


def test_the_kit_keeps_the_keyboard_focus_and_its_import_is_reachable(page, server):
    """A step toggled from the keyboard rebuilt the lanes and dropped the focus to the top of
    the page; the kit's Import input was hidden from the keyboard."""
    _open(page, server)
    ids = _embedded_ids(server, "m")
    for sid in ids[:2]:
        page.evaluate(f"{HOOK}.select({sid})")
        page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {sid}")
        page.click("#kit-add-selected")
    step = "#kit-lanes li[data-lane='1'] .step[data-step='2']"
    page.focus(step)
    page.keyboard.press("Space")
    assert _state(page, "kit")["lanes"][1]["steps"][2] is True
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Lane 2 step 3"
    page.keyboard.press("Space")  # and again, from where the focus stayed
    assert _state(page, "kit")["lanes"][1]["steps"][2] is False
    page.focus("#kit-import")
    assert page.evaluate("document.activeElement.id") == "kit-import"
    page.fill("#kit-tempo", "1000")  # the field shows the tempo the kit plays at
    page.dispatch_event("#kit-tempo", "change")
    assert page.input_value("#kit-tempo") == str(_state(page, "kit")["tempo"]) == "400"
    page.fill("#kit-tempo", "0")  # the slowest, not the default
    page.dispatch_event("#kit-tempo", "change")
    assert _state(page, "kit")["tempo"] == 20 and page.input_value("#kit-tempo") == "20"
    # a selection larger than the room left: the lanes fill, and the page says how many did not
    picked = page.evaluate(f"{HOOK}.selectBox(0, 0, 2000, 2000)")
    assert len(picked) > 14 and len(_state(page, "kit")["lanes"]) == 2
    page.click("#kit-add-selection")
    assert len(_state(page, "kit")["lanes"]) == 16
    assert page.inner_text("#status") == (
        f"A kit holds 16 lanes: {len(picked) - 14} sounds of {len(picked)} found no lane")


def test_back_in_3d_the_view_shows_what_2d_zoomed_to(page, server):
    """Going from 2-D back to 3-D kept the 3-D camera where it was: what 2-D had zoomed or
    flown to was gone. The 3-D view comes back looking at the same place at the distance that
    shows as much as the flat view did."""
    import numpy as np

    _open(page, server)
    ids = _isolated(page, server, 3)
    page.click("#view-2d")
    box = _map_box(page)
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    start = dict(zip(ids, _settled_positions(page, ids)))
    a = max(ids, key=lambda i: (start[i][0] - middle[0]) ** 2 + (start[i][1] - middle[1]) ** 2)
    page.mouse.dblclick(*start[a])  # flown to, and zoomed in
    (flat,) = _settled_positions(page, [a])

    near = [n["id"] for n in server.get(f"/api/models/m/neighbours/{a}?k=6&space=map")
            ["neighbours"]]

    def spread() -> float:  # how far a's nearest points on the map look from it: the zoom
        at = _settled_positions(page, [a, *near])
        return float(np.median([((p[0] - at[0][0]) ** 2 + (p[1] - at[0][1]) ** 2) ** 0.5
                                for p in at[1:] if p is not None]))

    zoomed = spread()
    page.click("#view-3d")
    (deep,) = _settled_positions(page, [a], visible=True)
    assert abs(deep[0] - flat[0]) < 3 and abs(deep[1] - flat[1]) < 3, (deep, flat)
    assert 0.5 < spread() / zoomed < 2, (spread(), zoomed)


def test_a_path_through_a_sample_another_model_lacks_is_a_spot_there_and_its_sample_here(
        page, mapped, tmp_path):
    """Model p has not embedded one sample of a path drawn on m's map: switching to p keeps
    that waypoint as a spot (rendered by its coordinates, the page says so), and switching
    back puts it on its sample again (rendered by its id)."""
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(mapped, atlas_dir)
    with ThreadedServer(create_app(atlas_dir)) as srv:
        _open(page, srv)
        a, b = _isolated(page, srv, 2)
        with Atlas.open(atlas_dir, write=True) as atlas:
            atlas.conn.execute("DELETE FROM embeddings WHERE model_id = ? AND sample_id = ?",
                               (atlas.model("p").id, b))
            atlas.conn.commit()
        page.keyboard.press("p")
        for sid in (a, b):
            x, y = _positions(page, [sid])[sid]
            page.mouse.click(x, y)
        sent = []
        page.route("**/api/models/*/synth", lambda route: (
            sent.append(json.loads(route.request.post_data)), route.continue_()))

        def rendered() -> dict:
            n = len(sent)
            page.click("#path-render")
            page.wait_for_function(f"{HOOK}.state.path.rendered !== null")
            assert len(sent) == n + 1
            return sent[-1]

        assert rendered()["ids"] == [a, b]
        page.select_option("#model", "p")
        page.wait_for_function(f"{HOOK}.state.model === 'p' && !{HOOK}.state.moving")
        page.wait_for_function("document.getElementById('status').textContent"
                               ".includes('kept as spots')")
        body = rendered()
        assert "ids" not in body and len(body["points"]) == 2
        page.select_option("#model", "m")
        page.wait_for_function(f"{HOOK}.state.model === 'm' && !{HOOK}.state.moving")
        assert rendered()["ids"] == [a, b]
        page.unroute("**/api/models/*/synth")
        page.goto("about:blank")


def test_fit_during_a_glide_ends_at_the_whole_map(page, server):
    """Fit (the whole map) pressed while a double-click's glide was under way: the glide went
    on and pulled the view back to the point. The last thing asked for wins."""
    _open(page, server)
    ids = _isolated(page, server, 3)
    home = _settled_positions(page, ids)
    x, y = home[0]
    page.evaluate("""([x, y]) => {  // the double-click and Fit in the same moment
        const canvas = document.querySelector('#map canvas');
        canvas.dispatchEvent(new MouseEvent('dblclick', { clientX: x, clientY: y,
                                                          bubbles: true }));
        document.getElementById('view-reset').click();
    }""", [x, y])
    for (u, v), (p, q) in zip(home, _settled_positions(page, ids)):
        assert abs(u - p) < 1 and abs(v - q) < 1


def test_a_kit_swap_answered_after_the_kit_changed_takes_no_sound_already_in_it(page, server):
    """The sounds a swap may take were those outside the kit when it was asked for: a lane
    added while the neighbours were on their way could be taken a second time."""
    _open(page, server)
    ids = _embedded_ids(server, "m")
    first = ids[0]
    near = [n["id"] for n in server.get(f"/api/models/m/neighbours/{first}?k=20")["neighbours"]]
    page.evaluate(f"{HOOK}.select({first})")
    page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {first}")
    page.click("#kit-add-selected")
    _hold_fetches(page, r"/neighbours/.*k=20")  # the swap's neighbours, until released
    page.click("#kit-lanes li[data-lane='0'] .name")
    page.locator("#map canvas").focus()
    page.keyboard.press("n")
    page.evaluate(f"{HOOK}.select({near[0]})")  # its nearest sound joins the kit meanwhile
    page.wait_for_function(f"{HOOK}.state.curation.selected?.id === {near[0]}")
    page.click("#kit-add-selected")
    page.evaluate("window.releaseHeld()")
    page.wait_for_function(f"{HOOK}.state.kit.swaps === 1")
    lanes = [lane["id"] for lane in _state(page, "kit")["lanes"]]
    assert lanes[1] == near[0] and lanes[0] not in (first, near[0]), lanes
