"""A feature file damaged or deleted after indexing: reading it names the file and the commands
that make it whole, `embed` leaves its samples out and embeds every other one (locally and on a
Dask cluster), `train` refuses in one line, and the commands named do repair it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tone_library, run_in_process
from soundatlas.atlas import Atlas
from soundatlas.errors import AtlasError
from soundatlas.indexing import index_library

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def indexed_master(tmp_path_factory) -> Path:
    """Six tones indexed two to a feature file (three files): a library to copy, never to
    change."""
    lib = make_tone_library(tmp_path_factory.mktemp("damaged") / "lib", n_per_folder=2)
    index_library(lib, n_jobs=1, batch_size=2)
    return lib


@pytest.fixture
def lib(indexed_master, tmp_path) -> Path:
    """A private copy of the indexed library (file times kept: nothing in it looks changed),
    its atlas pointing at the copy."""
    lib = tmp_path / "lib"
    shutil.copytree(indexed_master, lib)
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        atlas.set_meta("library", str(lib.resolve()))
    return lib


def _segment_of(atlas_dir: Path, *, split: str | None = None) -> tuple[Path, set[str]]:
    """A feature file (the first, or the first holding a sample of ``split``) and the paths of
    the samples in it."""
    with Atlas.open(atlas_dir, write=True) as atlas:
        splits = atlas.splits()
        rows = atlas.conn.execute(
            "SELECT s.id, s.path, g.file FROM samples s JOIN segments g ON g.id = s.segment"
            " ORDER BY g.id, s.id").fetchall()
    file = next(f for sid, _, f in rows if split is None or splits[sid] == split)
    return atlas_dir / "features" / file, {p for _, p, f in rows if f == file}


def _damage(file: Path, how: str) -> str:
    """Damage ``file``; what a reader should say about it."""
    if how == "truncated":
        with open(file, "r+b") as f:
            f.truncate(os.path.getsize(file) // 2)
        return "truncated"
    if how == "deleted":
        file.unlink()
        return "missing"
    if how == "not an array":
        file.write_bytes(b"not an array")
        return "not a readable array file"
    np.save(file, np.zeros((1, 192), np.float16))  # a whole array, of fewer frames than its rows
    return "holds an array of shape (1, 192)"


def _run(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "soundatlas"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "CI": "1"})


@pytest.fixture
def cli(capsys):
    """``soundatlas ARGS`` run in this process, quicker than ``_run``'s process (which the
    cross-bank test keeps)."""
    return lambda *args: run_in_process(capsys, *args)


@pytest.mark.parametrize("how", ["truncated", "deleted", "not an array", "too short"])
def test_reading_a_damaged_feature_file_names_it_and_the_repair(lib, how):
    atlas_dir = lib / ".soundatlas"
    file, paths = _segment_of(atlas_dir)
    said = _damage(file, how)
    with Atlas.open(atlas_dir) as atlas:
        records = atlas.samples()
        damaged = [r for r in records if r.path in paths]
        for rec in damaged:
            with pytest.raises(AtlasError) as caught:
                atlas.features(rec)
            message = str(caught.value)
            assert str(file) in message and said in message, message
            assert f"soundatlas check --atlas {atlas_dir.resolve()} --repair" in message
            assert f"soundatlas index {lib.resolve()} --atlas {atlas_dir.resolve()}" in message
        for rec in records:  # the other files read as before
            if rec.path not in paths:
                assert atlas.features(rec).shape == (rec.n_frames, 192)


def test_embed_leaves_out_the_damaged_files_samples_embeds_the_rest_and_the_repair_works(lib,
                                                                                           cli):
    atlas_dir = lib / ".soundatlas"
    file, paths = _segment_of(atlas_dir)
    _damage(file, "truncated")

    out = cli("embed", "--atlas", atlas_dir, "--precision", "fp32", "--json", "-q")
    assert out.returncode == 0, out.stderr  # as index with a file it cannot decode
    assert "Traceback" not in out.stderr
    summary = json.loads(out.stdout)
    assert summary["n_embedded"] == 4 and summary["n_skipped"] == 2
    assert {p for p, _ in summary["skipped"]} == paths
    assert all(why.startswith(f"{file}: truncated") for _, why in summary["skipped"])
    with Atlas.open(atlas_dir) as atlas:  # the undamaged samples' embeddings were stored
        model = atlas.model("default")
        ids, _ = atlas.points(model.id)
        assert {r.path for r in atlas.samples(ids.tolist())} == \
            {r.path for r in atlas.samples()} - paths
        assert model.n_embedded == 4

    # in words too: the next embed leaves them out again and says which, and how to repair
    text = cli("embed", "--atlas", atlas_dir, "--precision", "fp32", "-q")
    assert text.returncode == 0, text.stderr
    assert "2 samples left out: their features cannot be read" in text.stdout
    assert all(f"    {p}: {file}: truncated" in text.stdout for p in paths)
    assert f"to repair them: {summary['repair']}" in text.stdout

    # the command it names makes the atlas whole; the next embed does the two left out
    for command in summary["repair"].split(" && "):
        done = cli(*shlex.split(command)[1:])
        assert done.returncode == 0, command + "\n" + done.stdout + done.stderr
    again = cli("embed", "--atlas", atlas_dir, "--precision", "fp32", "--json", "-q")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["n_embedded"], summary["n_already"], summary["n_skipped"]) == (2, 4, 0)
    assert summary["skipped"] == [] and summary["repair"] is None
    assert cli("check", "--atlas", atlas_dir, "--no-models").returncode == 0


def test_embed_on_a_dask_cluster_leaves_out_a_deleted_files_samples(lib):
    distributed = pytest.importorskip("distributed")
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas, ensure_registered

    atlas_dir = lib / ".soundatlas"
    file, paths = _segment_of(atlas_dir)
    _damage(file, "deleted")
    seen = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client, Atlas.open(atlas_dir, write=True) as atlas:
        artifact, registration = resolve_model(atlas, "default")
        model_id = ensure_registered(atlas, artifact, registration)
        # batches of two: the damaged file's samples are one whole batch, which is left out
        summary = embed_atlas(atlas, artifact, model_id, precision="fp32", batch_size=2,
                              executor=client.get_executor(),
                              progress=lambda done, total: seen.append((done, total)))
        ids, _ = atlas.points(model_id)
        embedded = {r.path for r in atlas.samples(ids.tolist())}
        everything = {r.path for r in atlas.samples()}
    assert (summary.n_embedded, summary.n_skipped) == (4, 2)
    assert {p for p, _ in summary.skipped} == paths
    assert all(why == f"{file}: missing" for _, why in summary.skipped)
    assert summary.repair.startswith(f"soundatlas check --atlas {atlas_dir.resolve()} --repair")
    assert embedded == everything - paths
    assert seen[-1] == (6, 6)  # the bar ends full: the samples left out count as dealt with


def test_train_refuses_in_one_line_naming_the_file_and_the_repair(lib, cli):
    atlas_dir = lib / ".soundatlas"
    file, _ = _segment_of(atlas_dir, split="train")
    _damage(file, "truncated")
    out = cli("train", "--atlas", atlas_dir, "-n", "input-knn", "--iterations", "2", "-q")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"soundatlas train: error: the feature file {file} cannot be "
                               "read: truncated")
    assert f"soundatlas check --atlas {atlas_dir.resolve()} --repair" in lines[0]


def test_every_reader_of_many_samples_names_every_damaged_feature_file_at_once(lib, cli):
    """Two of the three feature files damaged, one holding training samples and one holding
    only validation samples: `train`, `evaluate` and the frame index of `synth` each say both
    (and their samples) in one line, not the first and then, after its repair, the next."""
    atlas_dir = lib / ".soundatlas"
    files = sorted((atlas_dir / "features").glob("seg-*.npy"))
    assert len(files) == 3
    assert cli("embed", "--atlas", atlas_dir, "--precision", "fp32", "-q").returncode == 0
    with Atlas.open(atlas_dir, write=True) as atlas:
        atlas.splits()
        rows = atlas.conn.execute("SELECT s.id, g.file FROM samples s JOIN segments g"
                                  " ON g.id = s.segment").fetchall()
        with atlas.transaction() as c:  # the first file's samples train, the last's validate
            for sid, file in rows:
                split = {files[0].name: "train", files[2].name: "valid"}.get(file, "train")
                c.execute("UPDATE splits SET split = ? WHERE sample_id = ?", (split, sid))
    _damage(files[0], "truncated")
    _damage(files[2], "deleted")
    out_dir = lib.parent / "out"
    out_dir.mkdir()
    for command in (["train", "--atlas", atlas_dir, "-n", "input-knn", "--iterations", "2"],
                    ["evaluate", "--atlas", atlas_dir, "--baselines", "input", "--analogies",
                     "0"],
                    ["synth", "--atlas", atlas_dir, "--walk", "random", "--duration", "1",
                     "--output", out_dir / "walk.wav"]):
        out = cli(*command, "-q")
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"soundatlas {command[0]}: error: 2 feature files cannot be "
                               "read (4 samples): "), line
        assert re.search(re.escape(f"{files[0]}: truncated") + r"[^;]* \(2 samples\)", line)
        assert f"{files[2]}: missing (2 samples)" in line and str(files[1]) not in line
        assert f"soundatlas check --atlas {atlas_dir.resolve()} --repair" in line


def _embedded(lib, cli):
    """``lib`` embedded with the shipped model: (its atlas, the model's record, the one
    embedding file)."""
    atlas_dir = lib / ".soundatlas"
    assert cli("embed", "--atlas", atlas_dir, "--precision", "fp32", "-q").returncode == 0
    with Atlas.open(atlas_dir) as atlas:
        model = atlas.model("default")
        (file,) = [f for (f,) in atlas.conn.execute(
            "SELECT file FROM embedding_segments WHERE model_id = ?", (model.id,))]
    return atlas_dir, model, file


def test_a_damaged_embedding_file_names_itself_and_the_commands_that_make_it_whole(lib, cli):
    atlas_dir, model, file = _embedded(lib, cli)
    with Atlas.open(atlas_dir) as atlas:
        sid = int(atlas.sample_ids()[0])
    path = atlas_dir / "embeddings" / file
    _damage(path, "truncated")
    with Atlas.open(atlas_dir) as atlas, pytest.raises(AtlasError) as caught:
        atlas.trajectory(model.id, sid)
    message = str(caught.value)
    assert str(path) in message and "truncated" in message
    # the trajectory figure says so too, not that the sample has no embedding yet
    figure = cli("trajectory", str(sid), "--atlas", atlas_dir, "-o", lib.parent / "t.png")
    assert figure.returncode == 1 and str(path) in figure.stderr, figure.stderr
    assert "has no embedding" not in figure.stderr
    commands = re.findall(r"`(soundatlas [^`]+)`", message)
    assert [c.split()[1] for c in commands] == ["check", "embed"]
    for command in commands:  # as the message says, with the model named
        done = cli(*shlex.split(command.replace("MODEL", "default"))[1:])
        assert done.returncode == 0, command + done.stdout + done.stderr
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.trajectory(atlas.model("default").id, sid).shape[1] == 3


def _http_error(server, path: str):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as caught:
        server.request(path)
    return caught.value.code, json.load(caught.value)["error"]


def test_the_web_api_names_a_damaged_file_and_its_repair_and_serves_the_rest(lib, cli):
    from soundatlas.web.app import create_app
    from soundatlas.web.server import ThreadedServer

    atlas_dir, model, embedding_file = _embedded(lib, cli)
    feature_file, paths = _segment_of(atlas_dir)
    with Atlas.open(atlas_dir) as atlas:
        hit = next(r for r in atlas.samples() if r.path in paths)
        whole = next(r for r in atlas.samples() if r.path not in paths)
        n_frames = len(atlas.trajectory(model.id, hit.id))
    _damage(feature_file, "truncated")
    with ThreadedServer(create_app(atlas_dir)) as server:
        # the CQT image of a sample in the damaged feature file: the atlas's state, named
        code, message = _http_error(server, f"/api/samples/{hit.id}/cqt.png")
        assert code == 409 and str(feature_file) in message and "check --atlas" in message
        headers, png = server.request(f"/api/samples/{whole.id}/cqt.png")
        assert png.startswith(b"\x89PNG")
        # its path on the map still draws, every frame of it
        headers, body = server.request(f"/api/models/default/trajectory/{hit.id}")
        assert (int(headers["x-frames"]), len(body)) == (n_frames, n_frames * 3 * 4)
        assert (int(headers["x-sounding-first"]), int(headers["x-sounding-last"])) == (
            0, n_frames - 1)
        (atlas_dir / "embeddings" / embedding_file).write_bytes(b"not an array")
        code, message = _http_error(server, f"/api/models/default/trajectory/{whole.id}")
        # not "not embedded yet" (404): the file, and the commands that make it whole
        assert code == 409 and embedding_file in message and "soundatlas embed" in message
        assert server.get("/api/atlas")["n_samples"] == 6


def test_an_embedding_file_holding_fewer_frames_than_its_rows_is_named_not_sliced(lib, cli):
    """A whole array, but not the one the rows were written with: slicing it would hand out
    short or empty trajectories (and render paths from them) without a word."""
    from soundatlas.errors import DamagedDataError

    atlas_dir, model, file = _embedded(lib, cli)
    with Atlas.open(atlas_dir) as atlas:
        ids = [int(i) for i in atlas.sample_ids()]
    np.save(atlas_dir / "embeddings" / file, np.zeros((1, 3), np.float32))
    with Atlas.open(atlas_dir) as atlas:
        for read in (lambda: atlas.trajectory(model.id, ids[-1]),
                     lambda: atlas.trajectories(model.id, ids)):
            with pytest.raises(DamagedDataError) as caught:
                read()
            assert file in str(caught.value) and "shape (1, 3)" in str(caught.value)


def test_cross_bank_evaluate_names_the_damaged_files_of_both_atlases_at_once(lib, tmp_path):
    ref = tmp_path / "ref"
    shutil.copytree(lib, ref)
    with Atlas.open(ref / ".soundatlas", write=True) as atlas:
        atlas.set_meta("library", str(ref.resolve()))
    damaged = []
    for root in (lib, ref):
        file = _segment_of(root / ".soundatlas")[0]
        _damage(file, "truncated")
        damaged.append(file)
    out = _run("evaluate", "--atlas", lib / ".soundatlas", "--reference", ref / ".soundatlas",
               "--baselines", "input", "--analogies", "0", "-q")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "2 feature files cannot be read" in line, line
    for root, file in zip((lib, ref), damaged):
        assert str(file) in line
        assert f"soundatlas check --atlas {(root / '.soundatlas').resolve()} --repair" in line
