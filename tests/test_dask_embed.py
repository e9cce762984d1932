"""Embedding on a real Dask cluster started as a user starts one (`dask scheduler`, two `dask
worker` processes): the atlas equals a local run's, and a worker killed mid-run loses and
duplicates nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from soundatlas.artifact import resolve_model  # noqa: E402
from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.embed import embed_atlas, ensure_registered  # noqa: E402

BIN = Path(sys.executable).parent
PRECISION = "fp32"  # the same arithmetic on any CPU, so the atlases can be compared exactly


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds (a start-up wait, not a check that nothing happened)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _dask_cluster(tmp_path: Path, n_workers: int, scheduler_env: dict | None = None):
    """`dask scheduler` on a port the OS picks (its environment ``scheduler_env``) and
    ``n_workers`` single-threaded `dask worker` processes without nannies (a killed worker stays
    dead), as subprocesses: (the scheduler file, the workers' processes); all killed at the end."""
    scheduler_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--scheduler-file",
                               str(scheduler_file), "--port", "0", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=scheduler_env)]
    try:
        _wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0,
                  "the scheduler file")
        for _ in range(n_workers):
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield scheduler_file, procs[1:]
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture
def cluster(tmp_path):
    """Two workers (``_dask_cluster``) and a client to them: (client, the workers' processes)."""
    with _dask_cluster(tmp_path, 2) as (scheduler_file, workers), \
            distributed.Client(scheduler_file=str(scheduler_file)) as client:
        client.wait_for_workers(2, timeout=120)
        yield client, workers


@pytest.fixture(scope="module")
def indexed(indexed_for_default) -> Path:
    return indexed_for_default


def _embed(src: Path, dst: Path, **kw):
    """Embed a copy of ``src``; here with one torch thread, as each worker runs (the thread
    count changes the last bit of some fp32 sums: with the same count the atlases are equal)."""
    import torch

    shutil.copytree(src, dst)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Atlas.open(dst, write=True) as atlas:
            artifact, registration = resolve_model(atlas, "default")
            model_id = ensure_registered(atlas, artifact, registration)
            return embed_atlas(atlas, artifact, model_id, precision=PRECISION, batch_size=8,
                               **kw)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local(indexed, tmp_path_factory) -> dict:
    """The atlas as a local run embeds it, and what that run said."""
    atlas_dir = tmp_path_factory.mktemp("local") / "atlas"
    summary = _embed(indexed, atlas_dir)
    return {"summary": summary, "dir": atlas_dir, **_stored(atlas_dir)}


def _stored(atlas_dir: Path) -> dict:
    with Atlas.open(atlas_dir) as atlas:
        model_id = atlas.model("default").id
        ids, points = atlas.points(model_id)
        trajs = atlas.trajectories(model_id, ids.tolist())
        vec_ids, vectors = atlas.similarity_vectors(model_id)
        n_rows = atlas.conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_id = ?",
                                    (model_id,)).fetchone()[0]
        return {"ids": ids, "points": points, "trajs": [trajs[i] for i in ids.tolist()],
                "vec_ids": vec_ids, "vectors": vectors, "n_rows": n_rows,
                "n_samples": atlas.n_samples()}


def _assert_same(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["ids"], b["ids"])
    np.testing.assert_array_equal(a["points"], b["points"])
    for x, y in zip(a["trajs"], b["trajs"]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["vec_ids"], b["vec_ids"])
    np.testing.assert_array_equal(a["vectors"], b["vectors"])
    assert a["n_rows"] == b["n_rows"] == a["n_samples"]


def test_embedding_on_a_cluster_gives_the_atlas_a_local_run_gives(cluster, indexed, local,
                                                                  tmp_path):
    client, _workers = cluster
    remote = _embed(indexed, tmp_path / "cluster", executor=client.get_executor())
    assert remote.n_embedded == local["summary"].n_embedded == local["n_samples"]
    _assert_same(_stored(tmp_path / "cluster"), local)
    # the batches ran on the workers, which hold the model
    assert any(client.run(lambda: bool(__import__("soundatlas.embed").embed._MODELS)).values())


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, indexed, local, tmp_path):
    client, workers = cluster
    killed = []

    def kill_one_worker(done, total):
        if not killed and done > 0:  # the first batch is committed, others are in flight
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(done)

    remote = _embed(indexed, tmp_path / "cluster", executor=client.get_executor(),
                    progress=kill_one_worker)
    assert killed and killed[0] < remote.n_embedded  # it died before the end
    workers[0].wait()
    assert remote.n_embedded == local["summary"].n_embedded
    _assert_same(_stored(tmp_path / "cluster"), local)


def test_map_takes_the_scheduler_for_indexing_and_embedding(cluster, indexed, local, tmp_path):
    client, _workers = cluster
    lib = tmp_path / "lib"
    shutil.copytree(indexed.parent, lib)  # the library with its atlas, nothing embedded yet
    (lib / "flute" / "new.wav").write_bytes(next((lib / "flute").glob("*.wav")).read_bytes())
    # the library named relative to this command's folder, which is not the workers' folder
    run = subprocess.run([str(BIN / "soundatlas"), "map", "lib", "--scheduler",
                          client.scheduler.address, "--precision", PRECISION, "--json", "-q"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["index"]["n_indexed"] == 1  # the new file, analysed on a worker
    assert summary["embed"]["n_embedded"] == local["n_samples"] + 1
    stored = _stored(lib / ".soundatlas")
    keep = np.isin(stored["ids"], local["ids"])
    np.testing.assert_array_equal(stored["points"][keep], local["points"])


def test_a_scheduler_without_workers_is_refused_before_anything_changes(local, tmp_path):
    """`embed --again --scheduler` at a scheduler no worker has joined: a usage error naming
    it, once Dask's connect timeout has passed (the batches would have waited for ever), and
    the model's embeddings, which --again replaces, still there."""
    with _dask_cluster(tmp_path, 0) as (scheduler_file, _):
        address = json.loads(scheduler_file.read_text())["address"]
        atlas_dir = tmp_path / "atlas"
        shutil.copytree(local["dir"], atlas_dir)
        run = subprocess.run([str(BIN / "soundatlas"), "embed", "--atlas", str(atlas_dir),
                              "--again", "--scheduler", address, "-q"],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    assert run.returncode == 2, run.stderr
    assert f"--scheduler {address}: no worker joined the scheduler within 3s" in run.stderr
    assert "Traceback" not in run.stderr
    with Atlas.open(atlas_dir) as atlas:
        assert atlas.model("default").n_embedded == local["n_samples"]


def test_workers_that_keep_dying_stop_the_run_in_words_keeping_what_was_done(indexed, tmp_path):
    """A scheduler that gives a batch up at its first worker's death (allowed-failures 0), and
    a worker killed once a batch is committed: embed stops with one message naming the Dask
    workers (not distributed's KilledWorker), and the batches finished are stored."""
    from soundatlas.errors import SoundAtlasError

    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    replacement = []
    with _dask_cluster(tmp_path, 1, env) as (scheduler_file, workers), \
            distributed.Client(scheduler_file=str(scheduler_file)) as client:
        client.wait_for_workers(1, timeout=120)
        killed = []

        def kill_the_worker(done, total):
            if not killed and done > 0:  # one batch committed, the next ones in flight
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(done)
                # a worker in its place: the batches that were only waiting on the dead one go
                # to it (without it they waited for a worker for ever, when one of them came
                # before the batch that died); the one it was running fails the run
                replacement.append(subprocess.Popen(
                    [str(BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                     "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        try:
            with pytest.raises(SoundAtlasError, match="the Dask workers running a batch died"):
                _embed(indexed, tmp_path / "atlas", executor=client.get_executor(),
                       progress=kill_the_worker)
        finally:
            for p in replacement:
                p.kill()
                p.wait()
    assert killed
    with Atlas.open(tmp_path / "atlas") as atlas:
        assert 0 < atlas.model("default").n_embedded < atlas.n_samples()


@pytest.mark.parametrize("where", ["client", "scheduler"])
def test_a_cluster_left_without_workers_stops_the_run_in_words_keeping_what_was_done(
        indexed, tmp_path, where):
    """The cluster's only worker killed once a batch is committed, and none joins: the batches
    it held wait for a worker. Embed stops, naming the cluster and Dask's
    no-workers-timeout, once that has passed on this side (``client``) or the scheduler's own
    timeout fails them (``scheduler``), instead of waiting for ever; what was done is stored."""
    import dask.config

    from soundatlas.errors import SoundAtlasError

    env = dict(os.environ)
    if where == "scheduler":
        env["DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT"] = "1s"
    setting = {"distributed.scheduler.no-workers-timeout": "2s" if where == "client" else None}
    with _dask_cluster(tmp_path, 1, env) as (scheduler_file, workers), \
            distributed.Client(scheduler_file=str(scheduler_file)) as client, \
            dask.config.set(setting):
        client.wait_for_workers(1, timeout=120)
        address = client.scheduler.address
        killed = []

        def kill_the_worker(done, total):
            if not killed and done > 0:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(done)

        waited = "2 s" if where == "client" else "as long as its scheduler waits"
        with pytest.raises(SoundAtlasError) as raised:
            _embed(indexed, tmp_path / "atlas", executor=client.get_executor(),
                   progress=kill_the_worker)
    assert killed
    assert str(raised.value).startswith(
        f"the Dask cluster at {address} has had no worker for {waited}")
    assert f"start `dask worker {address}`" in str(raised.value)
    with Atlas.open(tmp_path / "atlas") as atlas:
        assert 0 < atlas.model("default").n_embedded < atlas.n_samples()
