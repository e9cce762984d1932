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

from conftest import run_in_process, where_modes_bind
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


def test_a_model_replaced_or_removed_takes_its_embedding_files_with_it(whole, tmp_path):
    """Registering a model again under its name (as a second `adapt` or `train` does) or
    removing it deletes its embedding files at once; they were left as orphans before
    (found by benchmarks/bench_kill.py: `adapt` run twice)."""
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas

    lib = tmp_path / "lib"
    shutil.copytree(whole, lib, symlinks=True)
    atlas_dir = lib / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as atlas:
        record = atlas.model("copy")
        files = {f for (f,) in atlas.conn.execute(
            "SELECT file FROM embedding_segments WHERE model_id = ?", (record.id,))}
        assert files and all((atlas_dir / "embeddings" / f).is_file() for f in files)
        atlas.register_model("copy", record.dir, record.config)  # replaced: not embedded now
        assert not any((atlas_dir / "embeddings" / f).exists() for f in files)
    assert check_atlas(atlas_dir).problems == []
    with Atlas.open(atlas_dir, write=True, tidy=False) as atlas:  # tidy=False: tidying hides
        artifact, reg = resolve_model(atlas, "copy")
        embed_atlas(atlas, artifact, reg.id)
        files = {f for (f,) in atlas.conn.execute(
            "SELECT file FROM embedding_segments WHERE model_id = ?", (reg.id,))}
        atlas.remove_model("copy")
        assert not any((atlas_dir / "embeddings" / f).exists() for f in files)
    assert check_atlas(atlas_dir).problems == []


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
    out = _run("index", lib, "--jobs", "1", "-q")  # once the first is done, the next may write
    assert out.returncode == 0, out.stderr


def test_train_runs_beside_a_writer_and_locks_only_its_own_model(whole, tmp_path):
    """train writes no array file: it runs while an index or embed holds the atlas (two
    trainings of different models side by side), and refuses only a second run of the same
    model, naming the first."""
    from soundatlas.atlas.core import lock_writer, unlock_writer

    lib = tmp_path / "lib"
    shutil.copytree(whole, lib, symlinks=True)
    atlas_dir = lib / ".soundatlas"
    quick = ("-n", "instrument", "--iterations", "3", "--batch-size", "4", "--threads", "1", "-q")
    busy = atlas_dir / "models" / "busy"
    busy.mkdir(parents=True)
    with Atlas.open(atlas_dir, write=True):  # the atlas's writer lock, as index holds it
        out = _run("train", "--atlas", atlas_dir, "--name", "beside", *quick)
        assert out.returncode == 0, out.stderr
        lock_writer(busy, what="the model 'busy'")  # a run of 'busy' in progress
        try:
            out = _run("train", "--atlas", atlas_dir, "--name", "busy", *quick)
        finally:
            unlock_writer(busy)
        assert out.returncode == 1
        assert f"the model 'busy' of the atlas at {atlas_dir} is being written by pid " \
               f"{os.getpid()}" in out.stderr, out.stderr
    with Atlas.open(atlas_dir) as atlas:
        assert {m.name for m in atlas.models()} >= {"beside"}
        assert "busy" not in {m.name for m in atlas.models()}
    out = _run("train", "--atlas", atlas_dir, "--name", "busy", *quick)  # free again
    assert out.returncode == 0, out.stderr
    assert check_atlas(atlas_dir).ok


@pytest.mark.parametrize("kill_after", [8, 24])
def test_embed_killed_anywhere_resumes_to_the_atlas_an_uninterrupted_run_makes(
        whole, tmp_path, kill_after, capsys):
    """SIGKILL in the middle of `embed` (after `kill_after` samples committed, held still in
    its progress callback so the kill lands mid-run on any machine), then `embed` again: the
    same embeddings and vectors as a run never interrupted, no orphan file, integrity ok."""
    import signal

    import numpy as np

    lib = tmp_path / "lib"
    shutil.copytree(whole, lib, symlinks=True)
    atlas_dir = lib / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as atlas:
        atlas.remove_model("copy")
        atlas.remove_model("default")  # nothing embedded: both runs start from the same place
    fresh = tmp_path / "fresh"
    shutil.copytree(atlas_dir, fresh)
    code = ("import sys, threading\n"
            "from soundatlas.atlas import Atlas\n"
            "from soundatlas.artifact import resolve_model\n"
            "from soundatlas.embed import embed_atlas, ensure_registered\n"
            "def hold(done, total):\n"
            f"    if done >= {kill_after}:\n"
            "        print(done, flush=True)\n"
            "        threading.Event().wait()\n"
            "with Atlas.open(sys.argv[1], write=True) as atlas:\n"
            "    artifact, reg = resolve_model(atlas, 'default')\n"
            "    embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, reg),\n"
            "                batch_size=8, precision='fp32', progress=hold)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(atlas_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        n = int(proc.stdout.readline() or 0)
        assert proc.poll() is None, "embed ended before the kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert n >= kill_after
    for target in (atlas_dir, fresh):  # the killed one resumes; the fresh one runs whole
        out = run_in_process(capsys, "embed", "--atlas", target, "--model", "default",
                          "--precision", "fp32", "-q")
        assert out.returncode == 0, out.stderr
    with Atlas.open(atlas_dir) as a, Atlas.open(fresh) as b:
        ma, mb = a.model("default"), b.model("default")
        assert ma.n_embedded == mb.n_embedded == a.n_samples()
        ids_a, pts_a = a.points(ma.id)
        ids_b, pts_b = b.points(mb.id)
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_allclose(pts_a, pts_b, atol=1e-5)
        for sid in ids_a[::7].tolist():
            np.testing.assert_allclose(a.trajectory(ma.id, sid), b.trajectory(mb.id, sid),
                                       atol=1e-5)
        va, vb = a.similarity_vectors(ma.id)[1], b.similarity_vectors(mb.id)[1]
        assert np.abs(va.astype(int) - vb.astype(int)).max() <= 1  # int8 codes: a rounding
        assert a.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check_atlas(atlas_dir, models=False).problems == []  # no orphan left by the kill


@pytest.fixture
def read_only_view(whole, tmp_path):
    """The atlas's library seen through a read-only bind mount (root can write through chmod,
    not through a read-only mount); skipped, saying why, where mounting is refused."""
    src, view = tmp_path / "lib", tmp_path / "ro"
    shutil.copytree(whole, src, symlinks=True)
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(src), str(view)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip() or 'mount refused'}): "
                    "the read-only atlas is tested where the test may mount")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True,
                            text=True)
        if ro.returncode:
            pytest.skip(f"cannot remount read-only here ({ro.stderr.strip()})")
        yield view
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)


def test_an_atlas_on_a_read_only_filesystem_is_served_read_only_and_writers_say_why(
        read_only_view, tmp_path):
    atlas = read_only_view / ".soundatlas"
    out = _run("serve", "--atlas", atlas, "--get", "/api/curation")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["writable"] is False and "not writable" in d["read_only"]
    out = _run("serve", "--atlas", atlas, "--get", "/api/models/default/neighbours/1")
    assert out.returncode == 0 and json.loads(out.stdout)["neighbours"], out.stdout
    assert _run("check", "--atlas", atlas, "--no-models").returncode == 0
    for args in (("index", read_only_view), ("tag", "--atlas", atlas, "1", "--add", "x"),
                 ("embed", "--atlas", atlas)):
        out = _run(*args)
        assert out.returncode == 1, (args, out.stderr)
        assert "read-only" in out.stderr.lower() and "Traceback" not in out.stderr, out.stderr
    # a library on a read-only filesystem indexes into an atlas elsewhere, every file read
    elsewhere = tmp_path / "elsewhere"
    out = _run("index", read_only_view, "--atlas", elsewhere, "--json")
    assert out.returncode == 0, out.stderr
    with Atlas.open(elsewhere) as mine, Atlas.open(atlas) as theirs:
        ours = sorted(mine.paths(mine.sample_ids().tolist()).values())
        assert ours and ours == sorted(theirs.paths(theirs.sample_ids().tolist()).values())


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 256 KiB to fill (``remount(size)`` resizes it); skipped, saying why, where
    mounting is refused."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount refused'}): "
                    "a full disk is tested where the test may mount one")

    def remount(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)

    def used_kib() -> int:
        st = os.statvfs(disk)
        return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024

    try:
        yield disk, remount, used_kib
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_stops_index_and_embed_clearly_and_the_next_run_completes(
        rendered_library_master, small_disk, tmp_path):
    """Disk full during `index`, then during `embed`: one clear line and exit 1, no traceback;
    once space is freed the next run completes to the atlas a run with room makes."""
    import numpy as np

    disk, remount, used_kib = small_disk
    lib, full, roomy = rendered_library_master, disk / "atlas", tmp_path / "roomy"
    out = _run("index", lib, "--atlas", full, "--jobs", "1", "-q")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"no space left on the device holding {full}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    remount("16m")
    for target in (full, roomy):
        assert _run("index", lib, "--atlas", target, "--jobs", "1", "-q").returncode == 0
    remount(f"{used_kib() + 40}k")  # room for the log, not for the embeddings
    out = _run("embed", "--atlas", full, "-q")
    assert out.returncode == 1 and "no space left on the device" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    remount("16m")
    for target in (full, roomy):
        out = _run("embed", "--atlas", target, "--precision", "fp32", "-q")
        assert out.returncode == 0, out.stderr
    with Atlas.open(full) as a, Atlas.open(roomy) as b:
        recs_a = {r.path: r for r in a.samples()}
        recs_b = {r.path: r for r in b.samples()}
        assert recs_a.keys() == recs_b.keys() and len(recs_a) > 0
        for path in sorted(recs_a)[::5]:
            np.testing.assert_array_equal(a.features(recs_a[path]), b.features(recs_b[path]))
        ma, mb = a.model("default"), b.model("default")
        assert ma.n_embedded == mb.n_embedded == len(recs_a)
        np.testing.assert_allclose(a.points(ma.id)[1], b.points(mb.id)[1], atol=1e-5)
        assert a.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check_atlas(full).problems == []


def test_a_features_folder_that_cannot_be_written_stops_index_in_one_line_losing_nothing(
        tone_library):
    from conftest import write_tone

    prefix = where_modes_bind()
    lib, atlas_dir = tone_library, tone_library / ".soundatlas"
    assert _run("index", lib, "--jobs", "1", "-q").returncode == 0
    features = atlas_dir / "features"
    files = sorted(os.listdir(features))
    with Atlas.open(atlas_dir) as atlas:
        paths = sorted(atlas.paths(atlas.sample_ids().tolist()).values())
    write_tone(lib / "new" / "new_440.wav", 440.0)
    features.chmod(0o555)
    try:
        out = subprocess.run([*prefix, BIN, "index", str(lib), "--jobs", "1", "-q"],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CI": "1"})
    finally:
        features.chmod(0o755)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert f"cannot write the atlas at {atlas_dir}: features/: Permission denied" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(os.listdir(features)) == files
    with Atlas.open(atlas_dir) as atlas:
        assert sorted(atlas.paths(atlas.sample_ids().tolist()).values()) == paths
    assert _run("index", lib, "--jobs", "1", "-q").returncode == 0  # the next run completes
    with Atlas.open(atlas_dir) as atlas:
        assert len(atlas.sample_ids()) == len(paths) + 1
    assert check_atlas(atlas_dir).problems == []


def _digests(atlas_dir) -> dict:
    import hashlib

    return {name: hashlib.blake2b((atlas_dir / name).read_bytes()).hexdigest()
            for name in ("atlas.sqlite", "atlas.sqlite-wal")}


def test_a_log_left_by_a_killed_writer_is_reported_with_its_size_and_check_writes_nothing(
        tmp_path):
    atlas_dir = tmp_path / "atlas"
    Atlas.create(atlas_dir, library=tmp_path).close()
    code = ("import os, sys; from soundatlas.atlas import Atlas\n"
            "a = Atlas.open(sys.argv[1], write=True, tidy=False)\n"
            "a.set_meta('touched', '1')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(atlas_dir)], check=True)
    size = (atlas_dir / "atlas.sqlite-wal").stat().st_size
    before = _digests(atlas_dir)
    assert size > 0
    for _ in range(2):  # the same answer each time: the first check did not write the atlas
        out = _run("check", "--atlas", atlas_dir)
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stdout.splitlines()[0] == (f"log: atlas.sqlite-wal: {size} bytes left by a "
                                              "process that did not close the atlas")
        assert _digests(atlas_dir) == before

    # a log that an open connection holds is not stale, even while nothing is being written
    with Atlas.open(atlas_dir, write=True, tidy=False) as live:
        live.set_meta("touched", "2")
        assert live.meta("touched") == "2"
        out = _run("check", "--atlas", atlas_dir)
        assert out.returncode == 0 and "log:" not in out.stdout, out.stdout + out.stderr

    subprocess.run([sys.executable, "-c", code, str(atlas_dir)], check=True)
    report = check_atlas(atlas_dir, repair=True)
    assert [(p.kind, p.repaired) for p in report.problems] == [("log", "checkpointed")]
    assert check_atlas(atlas_dir).problems == []
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.meta("touched") == "1"


def test_check_reports_its_progress_over_every_array_file(whole):
    """The checksums are the long part on a large atlas: progress goes over every feature and
    embedding file, from 0 to all of them."""
    seen = []
    report = check_atlas(whole / ".soundatlas", models=False,
                         progress=lambda done, total: seen.append((done, total)))
    n = report.checked["feature_files"] + report.checked["embedding_files"]
    assert n > 1 and seen == [(i, n) for i in range(n + 1)]



def test_a_damaged_database_page_is_one_line_that_names_check(tone_library, capsys):
    """A page of the SQLite file damaged (a disk error, a copy cut short): every command says
    so in one line naming `check`, where `info` and `index` gave sqlite3's traceback."""
    import sqlite3

    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    db = tone_library / ".soundatlas" / "atlas.sqlite"
    with sqlite3.connect(db) as conn:
        root, = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'samples'").fetchone()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * page:(root - 1) * page + 8] = b"\xff" * 8  # the table's page header
    db.write_bytes(bytes(data))
    atlas = tone_library / ".soundatlas"
    for args, option in ((("info", "--atlas", atlas), f"--atlas {atlas}"),
                         (("index", tone_library, "-q", "--jobs", "1"), f"--atlas {atlas}")):
        proc = run_in_process(capsys, *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "the atlas's database is damaged (database disk image is malformed): " \
            f"`soundatlas check {option}` says where" in proc.stderr, proc.stderr
    proc = run_in_process(capsys, "check", "--atlas", atlas)
    assert proc.returncode == 1 and "malformed" in proc.stderr + proc.stdout


def test_info_tells_a_killed_index_run_from_a_running_one(tone_library, capsys):
    """A run recorded as running whose process is gone (kill -9) was shown as running until
    the next index started; so was one whose lock file names a process that runs but holds no
    lock (it finished writing and went on, or its number was given to another). What counts
    is whether a process holds the writer lock."""
    from soundatlas.atlas.core import WRITER_LOCK
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    atlas = tone_library / ".soundatlas"
    with Atlas.open(atlas, write=True) as a:
        a.start_run("index", 18)  # as a killed run leaves it
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()

    def status() -> str:
        proc = run_in_process(capsys, "info", "--atlas", atlas, "--json")
        return json.loads(proc.stdout)["last_index"]["status"]

    for pid in (gone, os.getpid()):
        (atlas / WRITER_LOCK).write_text(f"pid {pid} (soundatlas index lib, since now)\n")
        assert status() == "interrupted", pid
    from conftest import writer_lock_held

    with writer_lock_held(atlas):
        assert status() == "running"
    assert status() == "interrupted"


def test_an_index_out_of_step_with_its_table_is_named_and_rebuilt_by_repair(tone_library):
    """The samples_hash index made to miss a row (the row changed while SQLite did not know
    the index): check names it and says --repair rebuilds it; --repair runs REINDEX, and the
    atlas checks whole after, every sample kept."""
    import sqlite3

    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)
    atlas = tone_library / ".soundatlas"
    db = atlas / "atlas.sqlite"
    conn = sqlite3.connect(db)
    entry = conn.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master"
                         " WHERE name = 'samples_hash'").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'samples_hash'")  # hidden from writes
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE samples SET hash = upper(hash) WHERE id = 1")  # the index not told
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("INSERT INTO sqlite_master VALUES (?, ?, ?, ?, ?)", entry)
    conn.commit()
    conn.close()
    report = check_atlas(atlas, models=False)
    assert [p.line() for p in report.problems] == [
        "database: atlas.sqlite: row 1 missing from index samples_hash (--repair rebuilds the "
        "index)"]
    report = check_atlas(atlas, repair=True, models=False)
    assert [p.repaired for p in report.problems] == ["indexes rebuilt (REINDEX)"]
    assert check_atlas(atlas, models=False).ok
    with Atlas.open(atlas) as a:
        assert a.n_samples() == 18


def test_a_database_error_that_is_no_damage_keeps_its_traceback(tone_library, capsys,
                                                                 monkeypatch):
    """A constraint or a misuse (IntegrityError, ProgrammingError) is a bug of soundatlas, not
    a damaged atlas: not reported as one, with advice to make the atlas again."""
    import sqlite3

    from soundatlas.cli import main
    from soundatlas.indexing import index_library

    index_library(tone_library, n_jobs=1)

    def broken(*args, **kwargs):
        raise sqlite3.IntegrityError("UNIQUE constraint failed: samples.path")

    monkeypatch.setattr("soundatlas.cli.library.human_bytes", broken)
    with pytest.raises(sqlite3.IntegrityError):
        main(["info", "--atlas", str(tone_library / ".soundatlas")])
    assert "damaged" not in capsys.readouterr().err
