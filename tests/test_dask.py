"""Scale-out: the same batch stage on a real Dask distributed cluster gives the same atlas."""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.indexing import index_library  # noqa: E402


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
