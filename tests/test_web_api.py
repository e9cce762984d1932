"""The web API in-process (TestClient) on a small rendered, indexed, trained and embedded atlas."""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundatlas.atlas import Atlas
from soundatlas.web import create_app
from soundatlas.web.client import call
from soundatlas.web.deps import EMBED_HINT, sorted_values
from soundatlas.web.state import WebState

from pagecache import evict, resident, skip_unless_page_cache_shows

# three instruments over eight shared pitches, one velocity, both articulations: 48 notes
CLASSES = {"flute": (73, 60, 67), "trombone": (57, 60, 67), "violin": (40, 60, 67)}


def _client(app):
    with warnings.catch_warnings():  # starlette 1.x nudges towards httpx2; httpx is what we pin
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> Path:
    """The render indexed, a tiny model 'm' trained and embedded, and a model 'bare' registered
    with no embeddings."""
    from soundatlas.artifact import resolve_model
    from soundatlas.demo import render_library
    from soundatlas.embed import embed_atlas
    from soundatlas.indexing import index_library
    from soundatlas.train import settings_for, train

    root = tmp_path_factory.mktemp("web")
    render_library(root / "lib", classes=CLASSES, velocities=(80,), n_jobs=2)
    index_library(root / "lib", atlas_dir=root / "atlas", n_jobs=1)
    with Atlas.open(root / "atlas", write=True) as atlas:
        s = settings_for("fast", iterations=30, batch_size=16, valid_every=30, checkpoint_every=30)
        train(atlas, neighbourhood="instrument", settings=s, seed=0, name="m")
        artifact, reg = resolve_model(atlas, "m")
        embed_atlas(atlas, artifact, reg.id, precision="fp32")  # uploads follow: the exact path
        atlas.register_model("bare", reg.dir, reg.config)
    return root / "atlas"


@pytest.fixture(scope="module")
def atlas(mapped):
    with Atlas.open(mapped) as a:
        yield a


@pytest.fixture(scope="module")
def client(mapped):
    return _client(create_app(mapped))


@pytest.fixture(scope="module")
def m_id(atlas) -> int:
    return atlas.model("m").id


def _json_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- atlas, ids, labels -----------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_the_server_reads_its_database_into_memory_as_it_starts(mapped):
    """A nearest-sounds answer reads pages scattered over the database: at a million samples
    each one the page cache lacks is a disk read that holds the event loop."""
    from soundatlas.atlas import DB_NAME

    app = create_app(mapped)  # opening the atlas reads some of it
    files = [p for p in (mapped / DB_NAME, mapped / f"{DB_NAME}-wal")
             if p.is_file() and p.stat().st_size]
    for p in files:
        evict(p)
    skip_unless_page_cache_shows(files)
    with _client(app):  # its start (the lifespan) reads the whole database
        reader = app.state.web.warming
        assert reader is not None and reader.daemon  # never keeps the server from exiting
        reader.join(timeout=60)
        assert not reader.is_alive()
        assert [resident(p) for p in files] == [1.0] * len(files)


def test_the_server_leaves_a_database_larger_than_its_share_of_memory_on_disk(mapped,
                                                                             monkeypatch):
    from soundatlas.web import state

    web = create_app(mapped).state.web
    if Path("/proc/meminfo").exists():
        assert state.memory_available() > 0  # Linux says
    monkeypatch.setattr(state, "memory_available", lambda: 1 << 40)
    assert web.warm() is not None
    monkeypatch.setattr(state, "WARM_SHARE", 0.0)
    assert web.warm() is None
    monkeypatch.setattr(state, "WARM_SHARE", 0.25)
    monkeypatch.setattr(state, "memory_available", lambda: None)  # the system cannot say
    assert web.warm() is None


def test_the_database_reader_passes_over_what_it_cannot_read(tmp_path):
    from soundatlas.web.state import _read_through

    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it to read would wait for a writer
    readable = tmp_path / "db"
    readable.write_bytes(b"x" * 3000)
    errors = []

    got = []

    def read() -> None:
        try:
            got.append(_read_through([tmp_path / "gone", tmp_path, fifo, "nul\0byte",
                                      readable], chunk=1024))
        except Exception as exc:  # noqa: BLE001 - the test's finding
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive()  # nothing held it up, and it raised nothing (below)
    assert errors == []
    assert got == [3000]  # every byte of the one regular file


def test_atlas_names_library_labels_models_and_default_model(client, atlas):
    d = client.get("/api/atlas").json()
    assert d["n_samples"] == atlas.n_samples() == 48
    assert d["library"] == "lib"  # the folder's name, not its absolute path
    assert d["labels"] == atlas.label_summary()
    assert d["labels"]["instrument"] == {"flute": 16, "trombone": 16, "violin": 16}
    models = {m["name"]: m for m in d["models"]}
    assert models["m"] == {"name": "m", "neighbourhood": "instrument", "n_embedded": 48, "dims": 3}
    assert models["bare"]["n_embedded"] == 0
    assert d["default_model"] == "m" and "hint" not in d


def test_atlas_default_model_is_the_one_given(mapped):
    assert _client(create_app(mapped, model="bare")).get("/api/atlas").json()["default_model"] \
        == "bare"


def test_atlas_without_embeddings_gives_the_command_that_makes_them(mapped, tmp_path):
    bare = tmp_path / "atlas"
    shutil.copytree(mapped, bare)
    with Atlas.open(bare, write=True) as a:
        a.remove_model("m")
    d = _client(create_app(bare)).get("/api/atlas").json()
    assert d["default_model"] is None
    assert d["hint"] == EMBED_HINT == ("run: soundatlas map LIBRARY (or soundatlas embed "
                                       "--atlas A --model M)")


def test_while_a_run_writes_an_atlas_without_points_the_page_is_told_to_wait(mapped, tmp_path):
    """`embed --again` drops a model's points and makes them anew: the page said to run the
    command that was running. While a process holds the writer lock, the hint and the 409 say
    that a run is writing the atlas; once it lets go, they name the command again."""
    from soundatlas.web.deps import WRITING_HINT

    bare = tmp_path / "atlas"
    shutil.copytree(mapped, bare)
    with Atlas.open(bare, write=True) as a:
        a.register_model("m", a.model("m").dir, a.model("m").config)  # as embed --again does
    client = _client(create_app(bare))
    from conftest import writer_lock_held

    with writer_lock_held(bare):
        assert client.get("/api/atlas").json()["hint"] == WRITING_HINT
        r = client.get("/api/models/m/points")
        assert WRITING_HINT in _json_error(r, 409) and r.json()["hint"] == WRITING_HINT
    assert client.get("/api/atlas").json()["hint"] == EMBED_HINT
    assert "run: soundatlas embed" in _json_error(client.get("/api/models/m/points"), 409)


def test_sample_ids_are_every_id_ascending_as_int32(client, atlas):
    r = client.get("/api/samples/ids")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    ids = np.frombuffer(r.content, dtype="<i4")
    assert int(r.headers["x-count"]) == len(ids) == atlas.n_samples()
    assert ids.tolist() == sorted(r.id for r in atlas.samples())
    assert np.all(np.diff(ids) > 0)


def test_label_codes_decode_to_the_atlas_labels(client, atlas):
    ids = np.frombuffer(client.get("/api/samples/ids").content, dtype="<i4")
    for key in atlas.label_summary():
        d = client.get(f"/api/labels/{key}").json()
        assert d["key"] == key
        codes = np.frombuffer(base64.b64decode(d["codes"]), dtype="<i4")
        assert len(codes) == len(ids)
        truth = atlas.labels(key)
        decoded = {int(i): (d["values"][c] if c >= 0 else None) for i, c in zip(ids, codes)}
        assert decoded == {int(i): truth.get(int(i)) for i in ids}
        assert len(set(d["values"])) == len(d["values"])
    pitch = client.get("/api/labels/pitch").json()["values"]
    assert pitch == [str(p) for p in range(60, 68)]


def test_label_values_sort_numerically_only_when_all_are_numbers():
    assert sorted_values(["10", "9", "9", "100", "-1.5"]) == ["-1.5", "9", "10", "100"]
    assert sorted_values(["b", "10", "9"]) == ["10", "9", "b"]
    assert sorted_values(["nan", "1"]) == ["1", "nan"]


def test_unknown_label_key_is_404_naming_the_known_keys(client):
    message = _json_error(client.get("/api/labels/colour"), 404)
    assert "colour" in message and "instrument" in message and "pitch" in message


# -- points, trajectories --------------------------------------------------------------------


def test_points_are_ids_then_float32_points_of_every_embedded_sample(client, atlas, m_id):
    r = client.get("/api/models/m/points")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    n, dims = int(r.headers["x-count"]), int(r.headers["x-dims"])
    assert (n, dims) == (48, 3)
    assert len(r.content) == n * 4 + n * dims * 4
    ids = np.frombuffer(r.content[: n * 4], dtype="<i4")
    points = np.frombuffer(r.content[n * 4 :], dtype="<f4").reshape(n, dims)
    want_ids, want_points = atlas.points(m_id)
    assert ids.tolist() == want_ids.tolist() and np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(points, want_points)


def _prebuilds() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "soundatlas-prebuild"]


def test_the_points_start_building_the_similarity_index_the_nearest_sounds_need(mapped):
    """The page asks for a map's points, then for nearest sounds: the index those search is
    built in the background from the first, so the first click does not wait for it."""
    app = create_app(mapped)
    web = app.state.web
    with _client(app) as client, Atlas.open(mapped) as atlas:
        model = atlas.model("m")
        assert web.similarity_index(atlas, model, build=False) is None  # nothing built yet
        assert client.get("/api/models/m/points").status_code == 200
        for thread in _prebuilds():
            thread.join(timeout=120)
            assert not thread.is_alive()
        built = web.similarity_index(atlas, model, build=False)  # no request asked for it
        assert built is not None and built.index is not None and len(built.index) == 48
        assert web.prebuild_similarity("m") is not None  # nothing runs for it now: it may start
        for thread in _prebuilds():
            thread.join(timeout=120)
        r = client.get("/api/models/m/neighbours/%d" % int(atlas.points(model.id)[0][0]))
        assert r.status_code == 200 and r.json()["space"] == "similarity"
        assert web.similarity_index(atlas, model, build=False) is built  # searched, not rebuilt
        # a model that cannot be built (no embeddings) leaves no thread behind, and no error
        web.prebuild_similarity("bare")
        web.prebuild_similarity("no such model")
        for thread in _prebuilds():
            thread.join(timeout=120)
            assert not thread.is_alive()
        assert not web._prebuilding  # noqa: SLF001


def test_a_background_build_that_fails_says_so_once_and_is_not_repeated(mapped, monkeypatch,
                                                                          capfd):
    web = create_app(mapped).state.web
    tries = []

    def fails(atlas, model, build=True):
        tries.append(model.name)
        raise MemoryError("no room for the index")

    monkeypatch.setattr(web, "similarity_index", fails)
    for _ in range(3):  # three page loads on the same embeddings
        thread = web.prebuild_similarity("m")
        thread.join(timeout=120)
        assert not thread.is_alive()
    assert tries == ["m"]
    err = capfd.readouterr().err
    assert err.count("the similarity index of model 'm' could not be built in the background "
                     "(MemoryError: no room for the index)") == 1
    assert not web._prebuilding  # noqa: SLF001


def test_a_maps_points_do_not_wait_for_a_similarity_index_being_built(mapped):
    import threading

    web = create_app(mapped).state.web
    read = []

    def points() -> None:
        with web.atlas() as atlas:
            read.append(len(web.point_index(atlas, atlas.model("m")).ids))

    with web._build_locks[id(web._vectors)]:  # noqa: SLF001 - a similarity build under way
        reader = threading.Thread(target=points, daemon=True)
        reader.start()
        reader.join(timeout=120)
        waited = reader.is_alive()
    reader.join(timeout=120)
    assert not waited and read == [48], "the points waited for the similarity index's build"


def test_a_model_without_embeddings_is_409_with_the_command(client):
    r = client.get("/api/models/bare/points")
    message = _json_error(r, 409)
    assert "soundatlas embed" in message and "bare" in message
    assert r.json()["hint"] == EMBED_HINT
    _json_error(client.get("/api/models/bare/neighbours/1"), 409)


def test_unknown_model_is_404_naming_the_known_models(client):
    for url in ("/api/models/nope/points", "/api/models/nope/trajectory/1",
                "/api/models/nope/neighbours/1"):
        message = _json_error(client.get(url), 404)
        assert "nope" in message and "m" in message
    _json_error(client.post("/api/models/nope/analogy", json={"a": 1, "b": 2, "c": 3}), 404)


def test_trajectory_is_one_float32_point_per_frame(client, atlas, m_id):
    rec = atlas.samples()[5]
    r = client.get(f"/api/models/m/trajectory/{rec.id}")
    assert r.status_code == 200
    frames, dims = int(r.headers["x-frames"]), int(r.headers["x-dims"])
    assert (frames, dims) == (rec.n_frames, 3) and r.headers["x-frame-rate"] == "20"
    traj = np.frombuffer(r.content, dtype="<f4").reshape(frames, dims)
    np.testing.assert_array_equal(traj, atlas.trajectory(m_id, rec.id))
    _json_error(client.get("/api/models/m/trajectory/99999"), 404)


def test_trajectory_says_which_frames_sound(client, atlas):
    """The page draws a trajectory from its first to its last frame at least 5 % as loud as
    the loudest: rendered notes end in a release that fades to near-silence."""
    from soundatlas.frames import sounding_span

    trimmed = 0
    for rec in atlas.samples():
        h = client.get(f"/api/models/m/trajectory/{rec.id}").headers
        first, last = int(h["x-sounding-first"]), int(h["x-sounding-last"])
        assert (first, last) == sounding_span(atlas.features(rec),
                                              compression=atlas.cqt_params.compression)
        assert 0 <= first <= last < int(h["x-frames"])
        trimmed += last < int(h["x-frames"]) - 1
    assert trimmed > 0  # the near-silence after a note is left out


# -- neighbours and analogies ----------------------------------------------------------------


def _brute_force(points: np.ndarray, ids: np.ndarray, point, exclude) -> tuple[list, np.ndarray]:
    d = np.linalg.norm(points.astype(np.float64) - np.asarray(point, np.float64), axis=1)
    keep = ~np.isin(ids, list(exclude))
    order = np.argsort(d[keep], kind="stable")
    return ids[keep][order].tolist(), d[keep][order]


@pytest.mark.parametrize("k", [1, 5, 47, 200])
def test_neighbours_exclude_self_nearest_first_as_brute_force_finds(client, atlas, m_id, k):
    ids, points = atlas.points(m_id)
    for row in (0, 17, 47):
        sid = int(ids[row])
        d = client.get(f"/api/models/m/neighbours/{sid}", params={"k": k, "space": "map"}).json()
        assert d["space"] == "map" and "note" not in d
        got = d["neighbours"]
        assert len(got) == min(k, len(ids) - 1)
        assert sid not in [g["id"] for g in got]
        dist = [g["distance"] for g in got]
        assert dist == sorted(dist)
        want_ids, want_d = _brute_force(points, ids, points[row], {sid})
        assert [g["id"] for g in got] == want_ids[:len(got)]
        np.testing.assert_allclose(dist, want_d[:len(got)], rtol=1e-6, atol=1e-12)
        for g in got:
            assert g["path"] == atlas.samples([g["id"]])[0].path
            assert g["labels"] == atlas.sample_labels(g["id"])


@pytest.mark.parametrize("k", [1, 10, 47])
def test_neighbours_come_from_the_similarity_space_by_default_as_brute_force_finds(
        client, atlas, m_id, k):
    ids, codes = atlas.similarity_vectors(m_id)
    assert codes.shape == (48, 352) and codes.dtype == np.int8
    vectors = codes.astype(np.float64) * (1 / 127)
    for row in (0, 17, 47):
        sid = int(ids[row])
        d = client.get(f"/api/models/m/neighbours/{sid}", params={"k": k}).json()
        assert d["space"] == "similarity" and "hidden" in d["space_detail"]
        got = d["neighbours"]
        assert len(got) == min(k, len(ids) - 1) and sid not in [g["id"] for g in got]
        want_ids, want_d = _brute_force(vectors, ids, vectors[row], {sid})
        assert [g["id"] for g in got] == want_ids[:len(got)]
        np.testing.assert_allclose([g["distance"] for g in got], want_d[:len(got)], rtol=1e-9)
        explicit = client.get(f"/api/models/m/neighbours/{sid}",
                              params={"k": k, "space": "similarity"}).json()
        assert explicit == d


def test_a_bad_space_is_a_json_error(client):
    assert "space" in _json_error(client.get("/api/models/m/neighbours/1?space=umap"), 422)


@pytest.mark.parametrize("k", ["0", "201", "-3", "ten", "2.5"])
def test_a_bad_k_is_a_json_error(client, k):
    message = _json_error(client.get(f"/api/models/m/neighbours/1?k={k}"), 422)
    assert "k" in message


def test_neighbours_say_which_is_the_same_file_at_another_path(mapped, tmp_path):
    """A sample copied into another folder of its library: the copy is among its neighbours,
    with ``copy`` true, in both spaces; every other neighbour has it false."""
    from conftest import copied_with_copies

    with Atlas.open(mapped) as a:
        rec = a.samples()[7]
    client = _client(create_app(copied_with_copies(mapped, tmp_path, [rec.path],
                                                   precision="fp32")))
    for space in ("similarity", "map"):
        got = client.get(f"/api/models/m/neighbours/{rec.id}",
                         params={"k": 10, "space": space}).json()["neighbours"]
        copies = [n["path"] for n in got if n["copy"]]
        assert copies == [f"copies/{Path(rec.path).name}"], (space, got)
        assert all("copy" in n for n in got)


def test_neighbours_of_an_unknown_sample_is_404(client):
    assert "99999" in _json_error(client.get("/api/models/m/neighbours/99999"), 404)
    _json_error(client.get("/api/models/m/neighbours/abc"), 422)


def test_analogy_is_a_minus_b_plus_c_without_a_b_c(client, atlas, m_id):
    ids, points = atlas.points(m_id)
    a, b, c = (int(ids[i]) for i in (2, 20, 40))
    r = client.post("/api/models/m/analogy", json={"a": a, "b": b, "c": c, "k": 12,
                                                    "space": "map"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["space"] == "map"
    row = {int(i): n for n, i in enumerate(ids)}
    want = points[row[a]].astype(np.float64) - points[row[b]] + points[row[c]]
    np.testing.assert_allclose(d["point"], want, rtol=1e-6)
    got = [n["id"] for n in d["neighbours"]]
    assert len(got) == 12 and not {a, b, c} & set(got)
    want_ids, want_d = _brute_force(points, ids, want, {a, b, c})
    assert got == want_ids[:12]
    np.testing.assert_allclose([n["distance"] for n in d["neighbours"]], want_d[:12], rtol=1e-6)


def test_analogy_searches_a_minus_b_plus_c_in_the_similarity_space_by_default(client, atlas,
                                                                             m_id):
    ids, points = atlas.points(m_id)
    vec_ids, codes = atlas.similarity_vectors(m_id)
    vectors = codes.astype(np.float64) * (1 / 127)
    row = {int(i): n for n, i in enumerate(ids)}
    a, b, c = (int(ids[i]) for i in (3, 21, 44))
    d = client.post("/api/models/m/analogy", json={"a": a, "b": b, "c": c, "k": 12}).json()
    assert d["space"] == "similarity"
    np.testing.assert_allclose(d["point"], points[row[a]].astype(np.float64) - points[row[b]]
                               + points[row[c]], rtol=1e-6)  # the map's, for drawing
    want = vectors[row[a]] - vectors[row[b]] + vectors[row[c]]
    want_ids, want_d = _brute_force(vectors, vec_ids, want, {a, b, c})
    assert [n["id"] for n in d["neighbours"]] == want_ids[:12]
    np.testing.assert_allclose([n["distance"] for n in d["neighbours"]], want_d[:12], rtol=1e-9)
    assert "space" in _json_error(client.post("/api/models/m/analogy", json={
        "a": a, "b": b, "c": c, "space": "umap"}), 422)


def test_analogy_refuses_unknown_ids_and_bad_k(client):
    assert "99999" in _json_error(
        client.post("/api/models/m/analogy", json={"a": 1, "b": 99999, "c": 3}), 404)
    _json_error(client.post("/api/models/m/analogy", json={"a": 1, "b": 2, "c": 3, "k": 0}), 422)
    assert "c" in _json_error(client.post("/api/models/m/analogy", json={"a": 1, "b": 2}), 422)


def test_a_point_of_another_size_is_named_not_read_as_someone_elses(mapped, tmp_path):
    from soundatlas.errors import AtlasError

    broken = tmp_path / "atlas"
    shutil.copytree(mapped, broken)
    with Atlas.open(broken, write=True) as a:
        m = a.model("m").id
        ids, points = a.points(m)
        assert points.shape == (48, 3) and points.flags.writeable
        victim = int(ids[5])
        with a.conn:  # two floats where three belong
            a.conn.execute("UPDATE embeddings SET point = ? WHERE model_id = ? AND sample_id = ?",
                           (np.zeros(2, "<f4").tobytes(), m, victim))
        with pytest.raises(AtlasError, match=f"sample {victim}'s point"):
            a.points(m)


def test_the_kd_tree_is_cached_and_rebuilt_when_embeddings_change(mapped, atlas):
    web = WebState(mapped, model=None, max_upload_bytes=1, max_export_bytes=1)
    model = atlas.model("m")
    first = web.point_index(atlas, model)
    assert web.point_index(atlas, model) is first
    rebuilt = web.point_index(atlas, dataclasses.replace(model, n_embedded=model.n_embedded - 1))
    assert rebuilt is not first and rebuilt.ids.tolist() == first.ids.tolist()
    assert first.payload is first.payload  # the points endpoint's body, made once
    assert rebuilt.payload == first.payload and rebuilt.payload is not first.payload


def test_the_labelled_samples_reach_is_measured_again_when_they_change(mapped, atlas):
    """The far mark's reach is cached per label; one label taken off and another put on (the
    same count) must measure it again, and so must taking a slip off again (the review: a
    count-based key kept the slip's reach)."""
    from soundatlas.suggest import reach

    web = WebState(mapped, model=None, max_upload_bytes=1, max_export_bytes=1)
    model = atlas.model("m")
    vectors = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    made = []

    def labelled(rows):
        def make():
            made.append(tuple(rows))
            return vectors[list(rows)]
        return make

    a, b = list(range(30)), list(range(1, 31))  # as many, not the same
    first = web.label_reach(atlas, model, "map", "kind", a, labelled(a))
    assert first == pytest.approx(reach(vectors[a]))
    assert web.label_reach(atlas, model, "map", "kind", a[::-1], labelled(a)) == first
    assert made == [tuple(a)]  # the same samples: measured once
    web.label_reach(atlas, model, "map", "kind", b, labelled(b))
    assert made[-1] == tuple(b)
    assert web.label_reach(atlas, model, "map", "kind", a, labelled(a)) == first
    assert made[-1] == tuple(a) and len(made) == 3  # back to the first: measured again


# -- search and sample details ----------------------------------------------------------------


def test_search_by_path_substring_and_label_filters(client, atlas):
    paths = {r.id: r.path for r in atlas.samples()}
    d = client.get("/api/samples", params={"q": "FLUTE_06"}).json()
    want = sorted(i for i, p in paths.items() if "flute_06" in p.lower())
    assert d["total"] == len(want) == 16 and d["ids"] == want
    assert [it["id"] for it in d["items"]] == want
    assert all(it["labels"] == atlas.sample_labels(it["id"]) for it in d["items"])

    d = client.get("/api/samples", params=[("label", "instrument:violin"), ("label", "pitch:62"),
                                           ("q", "long")]).json()
    inst, pitch = atlas.labels("instrument"), atlas.labels("pitch")
    want = sorted(i for i, p in paths.items()
                  if inst[i] == "violin" and pitch[i] == "62" and "long" in p)
    assert d["ids"] == want and len(want) == 1
    # two values of one label: either (a sample has one value of a key), with the other key
    d = client.get("/api/samples", params=[("label", "instrument:violin"), ("label", "pitch:62"),
                                           ("label", "instrument:flute")]).json()
    want = sorted(i for i in paths if inst[i] in ("violin", "flute") and pitch[i] == "62")
    assert d["ids"] == want and len(want) == 4 and len({inst[i] for i in want}) == 2

    page = client.get("/api/samples", params={"limit": 5, "offset": 10}).json()
    assert page["total"] == 48 and len(page["ids"]) == 48
    assert [it["id"] for it in page["items"]] == sorted(paths)[10:15]
    assert client.get("/api/samples", params={"q": "no-such-thing"}).json()["total"] == 0


def test_search_refuses_bad_filters_and_limits(client):
    assert "KEY:VALUE" in _json_error(client.get("/api/samples?label=violin"), 400)
    assert "NUL" in _json_error(client.get("/api/samples?q=%00"), 400)  # LIKE matched them all
    assert "colour" in _json_error(client.get("/api/samples?label=colour:red"), 400)
    _json_error(client.get("/api/samples?limit=10001"), 422)
    _json_error(client.get("/api/samples?limit=0"), 422)
    _json_error(client.get("/api/samples?offset=-1"), 422)
    assert len(client.get("/api/samples?limit=10000").json()["items"]) == 48


def test_sample_details(client, atlas):
    rec = atlas.samples()[3]
    d = client.get(f"/api/samples/{rec.id}").json()
    assert d["path"] == rec.path and not d["path"].startswith("/")
    assert d["labels"] == atlas.sample_labels(rec.id)
    for key in ("duration", "file_duration", "orig_sr", "n_channels", "n_frames", "size"):
        assert d[key] == getattr(rec, key)
    assert d["orig_sr"] == 44100 and d["n_frames"] == rec.n_frames > 0
    assert "99999" in _json_error(client.get("/api/samples/99999"), 404)


def test_a_sample_id_in_a_path_is_digits_alone(client, atlas):
    """``1_0``, ``+10`` and `` 10`` were read as 10: a mistyped id answered for another sample."""
    sid = atlas.samples()[3].id
    assert client.get(f"/api/samples/{sid}").json()["id"] == sid
    for bad in (f"{sid // 10}_{sid % 10}" if sid >= 10 else f"0_{sid}", f"+{sid}", f"%20{sid}",
                f"{sid}.0", "-1", "9" * 19):
        for url in (f"/api/samples/{bad}", f"/api/samples/{bad}/audio",
                    f"/api/samples/{bad}/cqt.png", f"/api/models/m/neighbours/{bad}",
                    f"/api/models/m/trajectory/{bad}"):
            assert "digits alone" in _json_error(client.get(url), 422), url
        assert "digits alone" in _json_error(
            client.put(f"/api/curation/notes/{bad}", json={"note": "x"}), 422)


def test_cqt_png_is_a_png_of_the_stored_features(client, atlas):
    from PIL import Image

    rec = atlas.samples()[0]
    r = client.get(f"/api/samples/{rec.id}/cqt.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(r.content))
    assert img.height == 192 and img.width % rec.n_frames == 0 and img.width >= rec.n_frames
    _json_error(client.get("/api/samples/99999/cqt.png"), 404)


# -- audio -----------------------------------------------------------------------------------


def test_audio_streams_the_original_file_with_ranges(client, atlas):
    rec = atlas.samples()[7]
    data = (atlas.library / rec.path).read_bytes()
    url = f"/api/samples/{rec.id}/audio"
    r = client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "audio/wav"
    for header, (start, end) in [("bytes=10-19", (10, 20)), ("bytes=0-0", (0, 1)),
                                 ("bytes=-100", (len(data) - 100, len(data))),
                                 (f"bytes={len(data) - 7}-", (len(data) - 7, len(data))),
                                 (f"bytes=100-{len(data) + 50}", (100, len(data)))]:
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start:end], header
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
    for bad in (f"bytes={len(data)}-", f"bytes={len(data) + 10}-{len(data) + 20}", "bytes=-0"):
        r = client.get(url, headers={"Range": bad})
        assert "outside" in _json_error(r, 416), bad
        assert r.headers["content-range"] == f"bytes */{len(data)}"
    _json_error(client.get(url, headers={"Range": "lines=1-2"}), 400)
    _json_error(client.get("/api/samples/99999/audio"), 404)
    # HEAD: the same headers, no bytes, here and for the file by its path
    for head_url in (url, f"/api/files/{rec.path}"):
        r = client.head(head_url)
        assert r.status_code == 200 and r.content == b"", head_url
        assert int(r.headers["content-length"]) == len(data) and \
            r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "audio/wav"
    assert client.head("/api/files/no/such.wav").status_code == 404


# -- export ----------------------------------------------------------------------------------


def _pick(atlas, n=5):
    records = atlas.samples()
    return [records[i] for i in (9, 0, 31, 44, 17)[:n]]


def test_export_m3u_lists_every_file_with_duration_and_absolute_path(client, atlas):
    picked = _pick(atlas)
    r = client.post("/api/export", json={"ids": [p.id for p in picked], "format": "m3u"})
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment;")
    assert ".m3u" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 1 + 2 * len(picked)
    for rec, info, path in zip(picked, lines[1::2], lines[2::2]):
        seconds, name = info.removeprefix("#EXTINF:").split(",", 1)
        assert float(seconds) == pytest.approx(rec.file_duration, abs=1e-3)
        assert name == rec.path.rsplit(".", 1)[0]
        assert Path(path).is_absolute() and Path(path).read_bytes() == \
            (atlas.library / rec.path).read_bytes()


def test_export_csv_has_id_path_duration_and_every_label(client, atlas):
    picked = _pick(atlas)
    r = client.post("/api/export", json={"ids": [p.id for p in picked], "format": "csv"})
    assert r.status_code == 200 and ".csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    keys = sorted(atlas.label_summary())
    assert list(rows[0]) == ["id", "path", "duration", *keys]
    assert [int(row["id"]) for row in rows] == [p.id for p in picked]
    for rec, row in zip(picked, rows):
        assert row["path"] == rec.path
        assert float(row["duration"]) == pytest.approx(rec.file_duration, abs=1e-3)
        assert {k: row[k] for k in keys} == atlas.sample_labels(rec.id)


def test_export_zip_holds_the_files_byte_for_byte(client, atlas):
    picked = _pick(atlas)
    ids = [p.id for p in picked] + [picked[0].id]  # a duplicate is exported once
    r = client.post("/api/export", json={"ids": ids, "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert ".zip" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.testzip() is None
        assert z.namelist() == [p.path for p in picked]
        for rec in picked:
            assert z.read(rec.path) == (atlas.library / rec.path).read_bytes()


def test_export_refusals(client, mapped, atlas):
    message = _json_error(client.post("/api/export", json={"ids": [1, 99998, 99999],
                                                           "format": "csv"}), 404)
    assert "99998" in message and "99999" in message
    assert "empty" in _json_error(client.post("/api/export", json={"ids": [], "format": "m3u"}),
                                  400)
    assert "format" in _json_error(client.post("/api/export", json={"ids": [1], "format": "mp3"}),
                                   422)
    _json_error(client.post("/api/export", content=b"not json",
                            headers={"content-type": "application/json"}), 422)
    small = _client(create_app(mapped, max_export_bytes=100_000))
    picked = _pick(atlas)
    assert "limit" in _json_error(
        small.post("/api/export", json={"ids": [p.id for p in picked], "format": "zip"}), 413)


# -- query by example ------------------------------------------------------------------------


def test_query_with_a_copy_of_a_library_file_finds_that_file_first(client, atlas, m_id):
    rec = atlas.samples()[20]
    data = (atlas.library / rec.path).read_bytes()
    n_before = atlas.n_samples()
    r = client.post("/api/models/m/query", params={"k": 4},
                    files={"file": ("my take.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["duration"] == pytest.approx(rec.duration)
    assert len(d["trajectory"]) == rec.n_frames and len(d["trajectory"][0]) == 3
    h = client.get(f"/api/models/m/trajectory/{rec.id}").headers  # the same sounding part
    assert d["sounding"] == [int(h["x-sounding-first"]), int(h["x-sounding-last"])]
    first, second = d["neighbours"][0], d["neighbours"][1]
    assert len(d["neighbours"]) == 4 and first["id"] == rec.id and first["path"] == rec.path
    # the upload is that file, already in the library (its content), the others are not
    assert [n["copy"] for n in d["neighbours"]] == [True, False, False, False]
    # the same bytes embed to the same place (features at the atlas's precision, noise seeded by
    # content), up to float rounding far below the spacing of the map
    assert first["distance"] < 1e-3 * second["distance"]
    ids, points = atlas.points(m_id)
    np.testing.assert_allclose(d["point"], points[list(ids).index(rec.id)],
                               atol=1e-3 * second["distance"])
    np.testing.assert_allclose(d["trajectory"], atlas.trajectory(m_id, rec.id),
                               atol=1e-3 * second["distance"])
    assert atlas.n_samples() == n_before  # never added to the atlas
    # searched in the similarity space, with the vector the atlas stores for that file
    assert d["space"] == "similarity" and first["distance"] == 0
    ids, codes = atlas.similarity_vectors(m_id)
    vectors = codes.astype(np.float64) * (1 / 127)
    want_ids, want_d = _brute_force(vectors, ids, vectors[list(ids).index(rec.id)], set())
    assert [n["id"] for n in d["neighbours"]] == want_ids[:4]
    on_map = client.post("/api/models/m/query", params={"k": 4, "space": "map"},
                         files={"file": ("my take.wav", data, "audio/wav")}).json()
    want_ids, _ = _brute_force(points, ids, on_map["point"], set())
    assert on_map["space"] == "map" and [n["id"] for n in on_map["neighbours"]] == want_ids[:4]
    assert d["silent"] is False
    # a second of silence is placed too, and the answer says it is silent
    quiet = io.BytesIO()
    sf.write(quiet, np.zeros(44100, np.float32), 44100, format="WAV")
    hush = client.post("/api/models/m/query", params={"k": 4},
                       files={"file": ("hush.wav", quiet.getvalue(), "audio/wav")}).json()
    assert hush["silent"] is True and len(hush["neighbours"]) == 4


def test_query_refuses_non_audio_and_oversize_uploads(mapped, atlas):
    client = _client(create_app(mapped, max_upload_bytes=20_000))
    text = {"file": ("notes.wav", b"just some text", "audio/wav")}
    message = _json_error(client.post("/api/models/m/query", files=text), 400)
    assert "notes.wav" in message and "not audio" in message
    big = (atlas.library / atlas.samples()[0].path).read_bytes()
    assert len(big) > 20_000 + 65_536
    # refused from Content-Length alone, after reading the body, and while streaming a body
    # that declares no length (the rest is never read)
    for data in (big, big[:30_000]):
        assert "20000" in _json_error(client.post(
            "/api/models/m/query", files={"file": ("big.wav", data, "audio/wav")}), 413)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\""
            f"\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    multipart = [("content-type", f"multipart/form-data; boundary={boundary}")]
    status, _, answer = asyncio.run(
        call(client.app, "POST", "/api/models/m/query", body=body, headers=multipart))
    assert status == 413 and "20000" in json.loads(answer)["error"]
    # a body cut short before its closing boundary: said so, not "no file"
    cut = body[:8_000]
    status, _, answer = asyncio.run(
        call(client.app, "POST", "/api/models/m/query", body=cut, headers=multipart))
    assert status == 400 and "cut short" in json.loads(answer)["error"]
    assert "file" in _json_error(client.post("/api/models/m/query",
                                             files={"other": ("a.wav", b"RIFF", "audio/wav")}), 400)
    assert "multipart" in _json_error(client.post("/api/models/m/query", content=b"RIFF"), 400)
    _json_error(client.post("/api/models/nope/query", files={"file": ("a.wav", big[:10_000])}),
                404)
    _json_error(client.post("/api/models/m/query?k=0", files={"file": ("a.wav", b"x")}), 422)
    # finite samples too large for the analysis: NaN points and made-up neighbours (or a 500)
    buf = io.BytesIO()
    sf.write(buf, np.full(4000, 1e30, np.float32), 16000, format="WAV", subtype="FLOAT")
    for space in ("similarity", "map"):
        message = _json_error(client.post(f"/api/models/m/query?space={space}",
                                          files={"file": ("loud.wav", buf.getvalue())}), 400)
        assert "loud.wav" in message and "full scale" in message, message
    # a media type in capitals is one; a file named '.' is answered as 'upload'
    quiet = io.BytesIO()
    sf.write(quiet, 0.1 * np.sin(np.arange(8000) / 5.0).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\".\""
            f"\r\n\r\n").encode() + quiet.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = asyncio.run(call(client.app, "POST", "/api/models/m/query", body=body,
                                         headers=[("content-type", "Multipart/Form-Data; "
                                                   f"boundary={boundary}")]))
    assert status == 200 and json.loads(answer)["file"] == "upload", answer[:300]


def test_an_upload_the_temporary_folder_cannot_take_is_a_507_and_leaves_nothing(
        mapped, atlas, tmp_path, monkeypatch):
    """A write refused for room (here a file size limit, EFBIG, as a full disk's ENOSPC): the
    answer names the folder, and the part written is removed."""
    import resource
    import signal
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    client = _client(create_app(mapped))
    data = (atlas.library / atlas.samples()[0].path).read_bytes()
    assert len(data) > 2 * 65_536
    big = data * (2_500_000 // len(data) + 1)  # over 1 MB: spooled to disk while parsed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (65_536, hard))
    try:
        answers = [client.post("/api/models/m/query", files={"file": ("a.wav", d, "audio/wav")})
                   for d in (data, big)]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    for r in answers:
        message = _json_error(r, 507)
        assert str(folder) in message and "TMPDIR" in message
    assert list(folder.iterdir()) == []
    # with room again, the same upload is answered
    r = client.post("/api/models/m/query", files={"file": ("a.wav", data, "audio/wav")})
    assert r.status_code == 200 and list(folder.iterdir()) == []


# -- the rest ---------------------------------------------------------------------------------


def test_page_static_and_docs(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in r.text
    assert client.get("/static/index.html").text == r.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/models/{name}/neighbours/{sample_id}" in docs.text
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text
    spec = client.get("/openapi.json").json()
    for path in ("/api/atlas", "/api/samples/ids", "/api/labels/{key}", "/api/models/{name}/points",
                 "/api/models/{name}/trajectory/{sample_id}", "/api/models/{name}/analogy",
                 "/api/models/{name}/query", "/api/samples", "/api/samples/{sample_id}/cqt.png",
                 "/api/samples/{sample_id}/audio", "/api/files/{path}", "/api/export"):
        assert path in spec["paths"], path


def test_every_error_is_json(client):
    assert "/api/nope" in _json_error(client.get("/api/nope"), 404)
    assert "/static/nope.js" in _json_error(client.get("/static/nope.js"), 404)
    _json_error(client.delete("/api/atlas"), 405)
    _json_error(client.get("/api/export"), 405)


# -- a generated atlas: gaps in the ids, missing labels, awkward paths -----------------------

# paths whose search needs care: SQL LIKE wildcards, and characters beyond ASCII whose
# str.casefold differs from ASCII lowering (ß -> ss, the fi ligature -> fi, the Kelvin sign -> k)
AWKWARD_PATHS = ["fx/100% wet/Snare_01.wav", "fx/100x wet/Snare-01.wav", "fx/50_50/Mix.WAV",
                 "Straße/Bass.aif", "ÉCLAT/Hit.wav", "éclat/hit 2.wav", "ﬁll/Loop.wav",
                 "KELVIN/\u212a.wav", "tone/stereo.aif", "tone/hot.wav", "tone/broken.aif"]
GEN_QUERIES = ["", "snare", "SNARE_0", "100%", "%", "_", "e_0", "e-0", "0_5", "ss", "STRASSE",
               "straße", "é", "É", "éclat", "fi", "FILL", "k.wav", "\u212a", "/", ".WAV",
               "nope", "\\", "\\%"]


def _generated_labels(ids: list[int]) -> dict[int, dict[str, str]]:
    """Labels on most samples: numeric ``pitch`` values, a ``mixed`` key (numbers and words, so
    sorted as text), a ``rare`` key on three samples, ``nan`` among numbers, and samples with
    none at all."""
    rng = np.random.default_rng(11)
    out = {}
    for n, sid in enumerate(ids):
        labels = {}
        if n % 9:
            labels["instrument"] = ["kick", "snare", "hat", "Tom", "ride"][int(rng.integers(5))]
        if n % 4:
            labels["pitch"] = ["9", "10", "100", "-1.5", "60", "7.25"][int(rng.integers(6))]
        if n % 3 == 0:
            labels["mixed"] = ["b", "10", "9", "a b"][int(rng.integers(4))]
        if n % 5 == 1:
            labels["nanny"] = ["nan", "1", "2"][n % 3]
        if n in (3, 50, 200):
            labels["rare"] = f"r{n}"
        if n % 17 == 8:
            labels = {}
        if labels:
            out[sid] = labels
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """An atlas written through the atlas's API (no analysis): 311 samples, some removed (ids
    with gaps), labels from ``_generated_labels``, the awkward paths; a few real files for the
    audio tests (an AIFF, a float WAV beyond full scale, an AIFF that is text)."""
    import soundfile as sf

    from soundatlas.atlas import NewSample

    root = tmp_path_factory.mktemp("generated")
    lib = root / "lib"
    (lib / "tone").mkdir(parents=True)
    t = np.arange(12_345) / 22050
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 97 * t)], 1)
    sf.write(lib / "tone" / "stereo.aif", stereo, 22050, format="AIFF", subtype="PCM_24")
    hot = np.array([0.0, 0.5, 1.5, -2.0, np.nan, np.inf, -np.inf, -0.25], np.float32)
    sf.write(lib / "tone" / "hot.wav", hot, 8000, subtype="FLOAT")
    (lib / "tone" / "broken.aif").write_text("this is not audio at all\n" * 20)
    paths = [f"lib{i % 7}/Sample_{i:04d}.WAV" for i in range(300)] + AWKWARD_PATHS
    with Atlas.create(root / "atlas", library=lib) as atlas:
        frame = np.zeros((1, atlas.cqt_params.n_bins), np.float32)
        ids = atlas.commit_batch([NewSample(
            path=p, size=1, mtime_ns=0, hash=f"{n:032x}", orig_sr=22050, n_channels=1,
            duration=0.05, file_duration=0.05, truncated=False, features=frame)
            for n, p in enumerate(paths)])
        atlas.remove_samples(ids[10:20] + ids[100:101])
        kept = [i for i in ids if i not in set(ids[10:20] + ids[100:101])]
        atlas.replace_labels(_generated_labels(kept))
    return root / "atlas"


@pytest.fixture(scope="module")
def gen_atlas(generated):
    with Atlas.open(generated) as a:
        yield a


@pytest.fixture(scope="module")
def gen_client(generated):
    return _client(create_app(generated))


def _gen_id(gen_atlas, path: str) -> int:
    return next(r.id for r in gen_atlas.samples() if r.path == path)


def test_generated_ids_have_gaps_and_come_ascending(gen_client, gen_atlas, atlas):
    want = [r.id for r in gen_atlas.samples()]
    assert len(want) == 300 + len(AWKWARD_PATHS) - 11  # 11 removed
    assert want[-1] - want[0] + 1 > len(want)  # not contiguous: the group_concat way
    ids = np.frombuffer(gen_client.get("/api/samples/ids").content, dtype="<i4")
    assert ids.tolist() == want
    assert gen_atlas.sample_ids().tolist() == want and gen_atlas.sample_ids().dtype == np.int64
    # contiguous ids (the render): the arange way
    assert atlas.sample_ids().tolist() == [r.id for r in atlas.samples()]


def test_label_codes_equal_a_plain_python_computation(gen_client, gen_atlas):
    ids = [r.id for r in gen_atlas.samples()]
    keys = gen_atlas.label_summary()
    assert gen_atlas.label_keys() == sorted(keys) == ["instrument", "mixed", "nanny", "pitch",
                                                      "rare"]
    for key in keys:
        truth = gen_atlas.labels(key)
        values = sorted_values(truth.values())
        codes = [values.index(truth[i]) if i in truth else -1 for i in ids]
        d = gen_client.get(f"/api/labels/{key}").json()
        assert d["key"] == key and d["values"] == values, key
        assert np.frombuffer(base64.b64decode(d["codes"]), dtype="<i4").tolist() == codes, key
        assert -1 in codes  # every key misses some samples
    assert gen_client.get("/api/labels/pitch").json()["values"] == \
        ["-1.5", "7.25", "9", "10", "60", "100"]
    assert gen_client.get("/api/labels/mixed").json()["values"] == ["10", "9", "a b", "b"]
    assert gen_client.get("/api/labels/nanny").json()["values"] == ["1", "2", "nan"]


def test_label_column_is_labels_read_either_way(gen_atlas):
    # "rare" is on 3 of ~300 samples: read through the index; the others: one table scan
    for key in gen_atlas.label_keys() + ["absent"]:
        ids, values = gen_atlas.label_column(key)
        assert ids.dtype == np.int64 and len(ids) == len(values)
        assert dict(zip(ids.tolist(), values)) == gen_atlas.labels(key), key


def test_label_codes_of_labels_on_samples_not_listed():
    from soundatlas.web.routers.labels import label_codes

    values, codes = label_codes(np.array([2, 5, 9]), np.array([9, 7, 2, 11]),
                                ["x", "y", "10", "z"])
    assert values == ["10", "x", "y", "z"] and codes.tolist() == [0, -1, 1]
    values, codes = label_codes(np.array([2, 5]), np.zeros(0, np.int64), [])
    assert values == [] and codes.tolist() == [-1, -1]


@pytest.mark.parametrize("q", GEN_QUERIES)
def test_search_matches_a_casefold_substring_test(gen_client, gen_atlas, q):
    paths = {r.id: r.path for r in gen_atlas.samples()}
    want = sorted(i for i, p in paths.items() if q.casefold() in p.casefold())
    d = gen_client.get("/api/samples", params={"q": q, "limit": 10_000}).json()
    assert d["ids"] == want and d["total"] == len(want)
    assert [it["id"] for it in d["items"]] == want
    assert all(it["path"] == paths[it["id"]] for it in d["items"])


def test_search_of_wildcards_and_case_is_literal(gen_client):
    def found(q):
        items = gen_client.get("/api/samples", params={"q": q}).json()["items"]
        return [it["path"] for it in items]

    assert found("100%") == ["fx/100% wet/Snare_01.wav"]  # % is no wildcard
    assert found("E_01.wav") == ["fx/100% wet/Snare_01.wav"]  # nor is _ ...
    assert found("e-01.wav") == ["fx/100x wet/Snare-01.wav"]
    assert found("0_5") == ["fx/50_50/Mix.WAV"]
    assert found("LIB3/SAMPLE_0003.wav") == ["lib3/Sample_0003.WAV"]  # ASCII: any case
    assert found("strasse") == ["Straße/Bass.aif"]  # beyond ASCII: as str.casefold
    assert found("Éclat") == ["ÉCLAT/Hit.wav", "éclat/hit 2.wav"]


def test_search_with_label_filters_equals_python(gen_client, gen_atlas):
    paths = {r.id: r.path for r in gen_atlas.samples()}
    labels = {k: gen_atlas.labels(k) for k in gen_atlas.label_keys()}
    cases = [("", [("instrument", "snare")]), ("sample_00", [("pitch", "10")]),
             ("", [("instrument", "Tom"), ("pitch", "-1.5")]), ("lib2", [("mixed", "a b")]),
             ("", [("rare", "r50")]), ("", [("instrument", "tom")]), ("x", [("pitch", "nope")])]
    for q, filters in cases:
        want = sorted(i for i, p in paths.items() if q.casefold() in p.casefold()
                      and all(labels[k].get(i) == v for k, v in filters))
        params = [("q", q), ("limit", "7"), ("offset", "2")] + [("label", f"{k}:{v}")
                                                                 for k, v in filters]
        d = gen_client.get("/api/samples", params=params).json()
        assert d["ids"] == want, (q, filters)
        assert [it["id"] for it in d["items"]] == want[2:9]
        for it in d["items"]:
            assert it["labels"] == gen_atlas.sample_labels(it["id"])
            assert list(it["labels"]) == sorted(it["labels"])
    assert "colour" in _json_error(gen_client.get("/api/samples?label=colour:red"), 400)


# -- bulk lookup -----------------------------------------------------------------------------


def test_lookup_answers_paths_and_labels_in_the_order_asked(gen_client, gen_atlas):
    records = gen_atlas.samples()
    asked = [records[40].id, 999_999, records[3].id, records[40].id, -5, 2**70, records[0].id]
    r = gen_client.post("/api/samples/lookup", json={"ids": asked})
    assert r.status_code == 200, r.text
    d = r.json()
    want = [records[40], records[3], records[0]]
    assert [it["id"] for it in d["items"]] == [rec.id for rec in want]
    for it, rec in zip(d["items"], want):
        assert it == {"id": rec.id, "path": rec.path, "labels": gen_atlas.sample_labels(rec.id)}
    assert d["missing"] == [999_999, -5, 2**70]
    unlabelled = next(rec.id for rec in records if not gen_atlas.sample_labels(rec.id))
    got = gen_client.get(f"/api/samples/lookup?ids={records[3].id},{unlabelled}, 999999").json()
    assert got["items"][0] == d["items"][1] and got["items"][1]["labels"] == {}
    assert got["missing"] == [999_999]
    assert gen_client.get("/api/samples/lookup?ids=").json() == {"items": [], "missing": []}
    assert gen_client.post("/api/samples/lookup", json={"ids": []}).json() == \
        {"items": [], "missing": []}


def test_lookup_takes_up_to_ten_thousand_ids(gen_client, gen_atlas):
    ids = [r.id for r in gen_atlas.samples()]
    many = ids + list(range(10**6, 10**6 + 10_000 - len(ids)))
    d = gen_client.post("/api/samples/lookup", json={"ids": many}).json()
    assert [it["id"] for it in d["items"]] == ids and len(d["missing"]) == 10_000 - len(ids)
    message = _json_error(gen_client.post("/api/samples/lookup", json={"ids": many + [1]}), 400)
    assert "10001" in message and "10,000" in message
    big = ",".join(["1"] * 10_001)
    assert "10,000" in _json_error(gen_client.get(f"/api/samples/lookup?ids={big}"), 400)


@pytest.mark.parametrize("body", [{"ids": [1, "2"]}, {"ids": [1.5]}, {"ids": [True]},
                                  {"ids": "1,2"}, {"id": [1]}, [1, 2], {"ids": [None]}])
def test_lookup_refuses_malformed_ids(gen_client, body):
    assert "ids" in _json_error(gen_client.post("/api/samples/lookup", json=body), 400)


@pytest.mark.parametrize("ids", ["1,x", "1,,2", "1.5", "0x10", "1;2", "9" * 30])
def test_lookup_get_refuses_malformed_ids(gen_client, ids):
    assert "ids" in _json_error(gen_client.get("/api/samples/lookup", params={"ids": ids}), 400)


def test_lookup_is_documented(gen_client):
    spec = gen_client.get("/openapi.json").json()
    ops = spec["paths"]["/api/samples/lookup"]
    assert set(ops) == {"get", "post"} and "10,000" in ops["post"]["description"]
    _json_error(gen_client.post("/api/samples/lookup", content=b"not json",
                                headers={"content-type": "application/json"}), 422)


# -- audio decoded to WAV --------------------------------------------------------------------


def test_an_aiff_is_served_as_wav_with_the_same_samples(gen_client, gen_atlas, monkeypatch,
                                                        tmp_path):
    import tempfile

    import soundfile as sf

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the temporary WAV goes
    sid = _gen_id(gen_atlas, "tone/stereo.aif")
    original, sr = sf.read(gen_atlas.library / "tone" / "stereo.aif")
    r = gen_client.get(f"/api/samples/{sid}/audio?format=wav")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    info = sf.info(io.BytesIO(r.content))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 2, "PCM_16")
    decoded, _ = sf.read(io.BytesIO(r.content))
    assert decoded.shape == original.shape == (12_345, 2)
    np.testing.assert_allclose(decoded, original, atol=1.5 / 32768, rtol=0)
    part = gen_client.get(f"/api/samples/{sid}/audio?format=wav", headers={"Range": "bytes=0-11"})
    assert part.status_code == 206 and part.content == r.content[:12]
    assert list(tmp_path.iterdir()) == []  # each temporary WAV removed once sent
    # without format: the original bytes
    r = gen_client.get(f"/api/samples/{sid}/audio")
    assert r.content == (gen_atlas.library / "tone" / "stereo.aif").read_bytes()
    assert r.headers["content-type"] == "audio/aiff"


def test_wav_clips_what_is_beyond_full_scale(gen_client, gen_atlas):
    import soundfile as sf

    r = gen_client.get(f"/api/samples/{_gen_id(gen_atlas, 'tone/hot.wav')}/audio?format=wav")
    y, sr = sf.read(io.BytesIO(r.content), dtype="int16")
    assert sr == 8000 and y.tolist() == [0, 16384, 32767, -32768, 0, 32767, -32768, -8192]


def test_write_wav_decodes_block_by_block(gen_atlas, tmp_path):
    import soundfile as sf

    from soundatlas.transcode import transcode_wav as write_wav

    src = gen_atlas.library / "tone" / "stereo.aif"
    write_wav(src, tmp_path / "small-blocks.wav", name="x", block_frames=1000)
    write_wav(src, tmp_path / "one-block.wav", name="x")
    assert (tmp_path / "small-blocks.wav").read_bytes() == (tmp_path / "one-block.wav").read_bytes()
    assert sf.info(tmp_path / "one-block.wav").frames == 12_345


def test_audio_that_cannot_be_decoded_is_a_json_error_naming_the_file(gen_client, gen_atlas,
                                                                       monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sid = _gen_id(gen_atlas, "tone/broken.aif")
    r = gen_client.get(f"/api/samples/{sid}/audio?format=wav")
    message = _json_error(r, 400)
    assert "tone/broken.aif" in message and "not audio" in message
    assert r.json()["path"] == "tone/broken.aif" and "not audio" in r.json()["reason"]
    assert str(gen_atlas.library) not in message  # the library's own place stays unsaid
    assert list(tmp_path.iterdir()) == []
    # the original is still served as it is
    assert gen_client.get(f"/api/samples/{sid}/audio").status_code == 200
    # indexed, but gone from the library since: 404 naming it
    gone = _gen_id(gen_atlas, "ﬁll/Loop.wav")
    assert "ﬁll/Loop.wav" in _json_error(gen_client.get(f"/api/samples/{gone}/audio?format=wav"),
                                        404)
    _json_error(gen_client.get("/api/samples/99999/audio?format=wav"), 404)


@pytest.mark.parametrize("fmt", ["bogus", "", "WAVE", "mp3"])
def test_an_unknown_audio_format_is_400_naming_the_allowed(gen_client, gen_atlas, fmt):
    sid = _gen_id(gen_atlas, "tone/stereo.aif")
    message = _json_error(gen_client.get(f"/api/samples/{sid}/audio?format={fmt}"), 400)
    assert "wav" in message and repr(fmt) in message


def test_the_served_socket_turns_nagle_off_on_its_connections():
    """`soundatlas serve` binds its own socket. asyncio sets TCP_NODELAY only on sockets whose
    protocol is TCP: a bare socket.socket() made every kept-alive request wait ~40 ms for a
    delayed ACK (neighbours at 1M: 48 ms a request alone, 3.6 ms after)."""
    import socket
    from asyncio.base_events import _set_nodelay

    from soundatlas.cli.serve import _listening_socket

    server = _listening_socket("127.0.0.1", 0)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        _set_nodelay(conn)  # what the event loop does with every accepted connection
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        for s in (conn, client, server):
            s.close()


def test_a_threads_kept_connection_sees_commits_and_a_replaced_or_migrated_atlas(
        mapped, tmp_path):
    from conftest import downgrade_schema

    copy, other = tmp_path / "copy", tmp_path / "other"
    shutil.copytree(mapped, copy)
    web = WebState(copy, model=None, max_upload_bytes=1, max_export_bytes=1)
    with web.atlas() as first:
        n = first.n_samples()
    with Atlas.open(copy, write=True) as writer:  # a commit by another process
        writer.remove_samples(writer.sample_ids()[:3].tolist())
    with web.atlas() as again:
        assert again is first and again.n_samples() == n - 3  # kept, and current
    shutil.copytree(mapped, other)
    downgrade_schema(other, 4)
    os.replace(copy, tmp_path / "before")  # the atlas replaced by another at the same path
    os.replace(other, copy)
    with web.atlas() as replaced:
        assert replaced is not first and replaced.n_samples() == n
        assert replaced.schema_version == 4
    with Atlas.open(copy, write=True):  # migrated by a writer
        pass
    with web.atlas() as migrated:
        assert migrated is not replaced and migrated.schema_version > 4


def test_a_kept_atlas_reads_the_features_of_a_segment_id_used_again(tone_library):
    """SQLite gives a new segment the id of the last one when that was deleted: features are
    cached by file, not id, so an atlas kept open (the server's) reads the new file."""
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    atlas_dir = tone_library / ".soundatlas"
    with Atlas.open(atlas_dir) as reader, Atlas.open(atlas_dir, write=True) as writer:
        last = max(writer.samples(), key=lambda r: r.segment)
        in_segment = [r for r in writer.samples() if r.segment == last.segment]
        n_bins = reader.features(in_segment[0].id).shape[1]  # cached in the reader
        writer.remove_samples([r.id for r in in_segment])
        writer.collect_garbage()  # the segment's row and file go
        from soundatlas.atlas import NewSample

        new = NewSample(path="new.wav", size=1, mtime_ns=1, hash="h", orig_sr=16000,
                        n_channels=1, duration=1.0, file_duration=1.0, truncated=False,
                        features=np.full((5, n_bins), 0.5, np.float32))
        (sid,) = writer.commit_batch([new])
        rec = writer.samples([sid])[0]
        assert rec.segment == last.segment  # the id was used again
        np.testing.assert_allclose(reader.features(sid), 0.5, atol=1e-3)


def test_a_kept_atlas_maps_no_array_file_between_requests(mapped):
    """Each thread keeps its atlas, but not the array files a request mapped: every map holds
    a file descriptor, and a server's threads each keeping hundreds ran out of them."""
    web = WebState(mapped, model=None, max_upload_bytes=1, max_export_bytes=1)
    with web.atlas() as atlas:
        m = atlas.models()[0]
        sid = int(atlas.sample_ids()[0])
        atlas.features(sid)
        atlas.trajectory(m.id, sid)
        assert atlas._segment_cache and atlas._embedding_cache  # noqa: SLF001
    assert not atlas._segment_cache and not atlas._embedding_cache  # noqa: SLF001
    with web.atlas() as again:
        assert again is atlas  # the connection stays
