"""`soundatlas check`: an atlas damaged on purpose (truncated, deleted and changed files, a file
no row names, a model that does not load, a log left by a killed writer) is reported one line per
problem, and `--repair` plus the next `index` and `embed` make it whole without losing the
user's tags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from soundatlas.atlas import Atlas
from soundatlas.check import check_atlas

BIN = os.path.join(os.path.dirname(sys.executable), "soundatlas")


@pytest.fixture(scope="module")
def whole(rendered_library_master, tmp_path_factory):
    """The small render indexed in batches of 8 (several feature files) and embedded with the
    shipped model and with a copy of it kept inside the atlas."""
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import cqt_for_model, index_library

    lib = tmp_path_factory.mktemp("check") / "lib"
    shutil.copytree(rendered_library_master, lib)
    index_library(lib, n_jobs=1, batch_size=8, params=cqt_for_model(lib, None, "default"))
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        artifact, reg = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, reg))
        shutil.copytree(artifact.source, lib / ".soundatlas" / "models" / "copy")
        config = dict(artifact.config, name="copy")
        atlas.register_model("copy", "models/copy", config)
        embed_atlas(atlas, artifact, atlas.model("copy").id)
        atlas.tag(atlas.sample_ids().tolist()[:5], add=["keep"])
    return lib


def _run(*args):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CI": "1"})


def test_a_whole_atlas_checks_ok(whole):
    out = _run("check", "--atlas", whole / ".soundatlas", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    d = json.loads(out.stdout)
    assert d["ok"] and d["problems"] == [] and d["checked"]["feature_files"] >= 3
    assert d["checked"]["models"] == 2


def test_damage_is_reported_one_line_each_and_repaired_without_losing_tags(whole, tmp_path):
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas
    from soundatlas.indexing import index_library

    lib = tmp_path / "lib"
    shutil.copytree(whole, lib, symlinks=True)
    atlas_dir = lib / ".soundatlas"
    with Atlas.open(atlas_dir) as atlas:
        files = [f for (f,) in atlas.conn.execute("SELECT file FROM segments ORDER BY id")]
        emb = atlas.conn.execute("SELECT file FROM embedding_segments ORDER BY id").fetchone()[0]
        tagged = {r.path for r in atlas.samples(list(atlas.ids_with(tag="keep")))}
    features = atlas_dir / "features"
    with open(features / files[0], "r+b") as f:  # truncated
        f.truncate(os.path.getsize(features / files[0]) // 2)
    (features / files[1]).unlink()  # deleted
    data = bytearray((features / files[2]).read_bytes())  # one byte flipped
    data[-3] ^= 0xFF
    (features / files[2]).write_bytes(bytes(data))
    (atlas_dir / "embeddings" / emb).unlink()
    (features / "seg-stray.npy").write_bytes(b"not ours")
    (atlas_dir / "models" / "copy" / "weights.npz").rename(tmp_path / "weights.npz")
    # a writer killed after a commit: its log stays beside the database
    code = ("import os, sys; from soundatlas.atlas import Atlas\n"
            "a = Atlas.open(sys.argv[1], write=True, tidy=False)\n"
            "a.set_meta('touched', '1')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(atlas_dir)], check=True)
    assert (atlas_dir / "atlas.sqlite-wal").stat().st_size > 0

    out = _run("check", "--atlas", atlas_dir)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    kinds = [line.split(":")[0] for line in lines[:-1]]
    assert sorted(kinds) == sorted(["features", "features", "features", "embeddings", "orphan",
                                    "model", "log"]), out.stdout
    text = out.stdout
    assert f"features/{files[0]}: truncated" in text
    assert f"features/{files[1]}: missing" in text
    assert f"features/{files[2]}: its bytes changed" in text
    assert "orphan: features/seg-stray.npy" in text and "model: copy: does not load" in text

    report = check_atlas(atlas_dir, repair=True)
    assert not report.ok  # the model cannot be repaired: it is the user's to resolve
    assert [p.kind for p in report.problems if not p.repaired] == ["model"]
    shutil.move(tmp_path / "weights.npz", atlas_dir / "models" / "copy" / "weights.npz")
    index_library(lib, n_jobs=1)  # analyses the marked samples again
    with Atlas.open(atlas_dir, write=True) as atlas:
        for name in ("default", "copy"):
            artifact, reg = resolve_model(atlas, name)
            embed_atlas(atlas, artifact, reg.id)
    after = check_atlas(atlas_dir)
    assert after.ok and after.problems == [], [p.line() for p in after.problems]
    with Atlas.open(atlas_dir) as atlas:
        assert {r.path for r in atlas.samples(list(atlas.ids_with(tag="keep")))} == tagged
        assert atlas.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_one_writer_at_a_time_the_second_refuses_naming_the_first(whole, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(whole, lib, symlinks=True)
    atlas_dir = lib / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as first:  # holds the writer lock, as index does
        with Atlas.open(atlas_dir, write=True):  # the same process again: re-entrant
            pass
        for args in (("index", lib), ("embed", "--atlas", atlas_dir),
                     ("check", "--atlas", atlas_dir, "--repair")):
            out = _run(*args, "-q")
            assert out.returncode == 1, (args, out.stdout, out.stderr)
            assert f"being written by pid {os.getpid()}" in out.stderr, out.stderr
        # the user's layer is not locked out: tags may be written meanwhile
        out = _run("tag", "--atlas", atlas_dir, first.sample_ids()[0], "--add", "while")
        assert out.returncode == 0, out.stderr
    out = _run("index", lib, "-q")  # once the first is done, the next may write
    assert out.returncode == 0, out.stderr
