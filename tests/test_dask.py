"""Scale-out: the same batch stage on a real Dask distributed cluster gives the same atlas."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.indexing import index_library  # noqa: E402
from soundatlas.pipeline import run_batches  # noqa: E402


def test_index_on_a_local_dask_cluster_matches_local_processes(tone_library, tmp_path):
    (tone_library / "low" / "broken.wav").write_text("not audio")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        on_dask = index_library(tone_library, atlas_dir=tmp_path / "dask",
                                executor=client.get_executor(), batch_size=4)
    local = index_library(tone_library, atlas_dir=tmp_path / "local", n_jobs=2, batch_size=4)
    assert (on_dask.n_indexed, on_dask.n_failed) == (local.n_indexed, local.n_failed) == (18, 1)
    assert dict(on_dask.failures) == dict(local.failures)
    with Atlas.open(tmp_path / "dask") as a, Atlas.open(tmp_path / "local") as b:
        ra, rb = {r.path: r for r in a.samples()}, {r.path: r for r in b.samples()}
        assert ra.keys() == rb.keys()
        for path in ra:
            np.testing.assert_array_equal(a.features(ra[path]), b.features(rb[path]))


def test_cli_scheduler_option(tone_library, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "soundatlas"), "index", str(tone_library),
             "--scheduler", cluster.scheduler_address, "--json", "-q"],
            capture_output=True, text=True, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_indexed"] == 18


def _meet(batch, folder: str, n: int) -> int:
    """A batch that marks its start in ``folder`` and waits until ``n`` batches have started
    (for two minutes at most): how many had."""
    Path(folder, str(batch[0])).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(os.listdir(folder))


def test_batches_in_flight_follow_workers_that_join_after_the_start(tmp_path):
    """A cluster of one worker when the run starts, three more joining once it runs (as an
    adaptive or batch-queue cluster grows): four batches run at once. The run sent two at a
    time, as many as its first look at the cluster allowed, so the first batch waited in vain
    for the other three."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers lack this module
    started = tmp_path / "started"
    started.mkdir()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        def grow():
            while not os.listdir(started):  # a start-up wait: the run is under way
                time.sleep(0.02)
            cluster.scale(4)

        grower = threading.Thread(target=grow)
        grower.start()
        try:
            stage = functools.partial(_meet, folder=str(started), n=4)
            met = list(run_batches(stage, ([i] for i in range(8)), n_jobs=1,
                                   executor=client.get_executor()))
        finally:
            grower.join()
    assert met[0] >= 4, met


def test_the_watch_waits_as_long_as_the_schedulers_own_no_workers_timeout(tmp_path):
    """A scheduler started with its own no-workers timeout (7 s): the run waits that long and
    a grace more, so the scheduler's answer comes first; one without: 5 minutes; this side's
    setting, where given, first of all."""
    import subprocess

    import dask.config

    from soundatlas.pipeline import NO_WORKERS_TIMEOUT_S, _ClusterWatch

    def scheduler(env):
        file = tmp_path / f"scheduler-{len(env)}.json"
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "scheduler",
                                 "--scheduler-file", str(file), "--port", "0",
                                 "--no-dashboard"], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (file.exists() and file.stat().st_size):  # a start-up wait
            time.sleep(0.05)
        return proc, file

    limits = []
    for env in ({"DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": "7s"}, {}):
        proc, file = scheduler(env)
        try:
            with distributed.Client(scheduler_file=str(file)) as client:
                limits.append(_ClusterWatch(client).limit)
                with dask.config.set({"distributed.scheduler.no-workers-timeout": "2s"}):
                    assert _ClusterWatch(client).limit == 2
        finally:
            proc.kill()
            proc.wait()
    assert limits == [7 + 30, NO_WORKERS_TIMEOUT_S]
