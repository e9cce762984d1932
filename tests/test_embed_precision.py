"""Embedding in bf16: the default where the device computes it natively, within 1 % of the map's
extent of the exact fp32 path, which `--precision fp32` keeps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from soundatlas.artifact import resolve_model
from soundatlas.atlas import Atlas
from soundatlas.embed import _thread_pool, embed_atlas, ensure_registered
from soundatlas.errors import ParameterError
from soundatlas.model import build_model, inference_precision, native_bf16
from soundatlas.settings import PRECISIONS

BIN = Path(sys.executable).parent / "soundatlas"


@pytest.fixture(scope="module")
def indexed(indexed_for_default) -> Path:
    return indexed_for_default


def _embed_copy(indexed: Path, atlas_dir: Path, precision: str, **kw) -> dict:
    """Embed a copy of the atlas with the shipped model at ``precision``; what it stored."""
    shutil.copytree(indexed, atlas_dir)
    with Atlas.open(atlas_dir, write=True) as atlas:
        artifact, registration = resolve_model(atlas, "default")
        model_id = ensure_registered(atlas, artifact, registration)
        summary = embed_atlas(atlas, artifact, model_id, precision=precision, **kw)
        ids, points = atlas.points(model_id)
        trajs = atlas.trajectories(model_id, ids.tolist())
        _, vectors = atlas.similarity_vectors(model_id)
    return {"summary": summary, "ids": ids, "points": points, "vectors": vectors,
            "trajs": [trajs[i] for i in ids.tolist()], "dir": atlas_dir}


@pytest.fixture(scope="module")
def both(indexed, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("both")
    return {p: _embed_copy(indexed, root / p, p) for p in ("fp32", "bf16")}


def test_bf16_points_and_trajectories_stay_within_1_percent_of_the_maps_extent(both):
    exact, fast = both["fp32"], both["bf16"]
    assert (exact["summary"].precision, fast["summary"].precision) == ("fp32", "bf16")
    np.testing.assert_array_equal(exact["ids"], fast["ids"])
    extent = float(np.max(exact["points"].max(axis=0) - exact["points"].min(axis=0)))
    assert extent > 0
    assert np.max(np.abs(fast["points"] - exact["points"])) <= 0.01 * extent
    traj_extent = max(float(np.ptp(np.concatenate(exact["trajs"]), axis=0).max()), extent)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(exact["trajs"], fast["trajs"]))
    assert worst <= 0.01 * traj_extent
    # it is another arithmetic, not the same numbers
    assert not np.array_equal(fast["points"], exact["points"])
    # the similarity vectors (int8 codes of the hidden layer) agree to a code or two
    diff = np.abs(fast["vectors"].astype(int) - exact["vectors"].astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5


def test_fp32_is_the_exact_path(both, indexed):
    """`--precision fp32` gives what the network's forward pass gives on each window."""
    from soundatlas.embed import _noise_rng, embed_features, prediction_noise

    exact = both["fp32"]
    with Atlas.open(indexed) as atlas:
        artifact, _ = resolve_model(atlas, "default")
        recs = atlas.samples(exact["ids"][:3].tolist())
        for rec, traj in zip(recs, exact["trajs"][:3]):
            F = atlas.features(rec)
            alone = embed_features(artifact.model, F, noise=prediction_noise(artifact),
                                   rng=_noise_rng(rec.hash),
                                   compression=atlas.cqt_params.compression)
            np.testing.assert_allclose(traj, alone, atol=1e-5, rtol=0)


def test_batches_run_one_per_thread_and_give_what_one_thread_gives(indexed, tmp_path):
    """With several torch threads, embed runs one batch per thread, each thread's operations on
    one core; the atlas is the one a single-threaded run makes, bit for bit."""
    def threads_seen(into):
        return lambda _done, _total: into.update(t.name for t in threading.enumerate())

    before = torch.get_num_threads()
    pooled_threads, serial_threads = set(), set()
    try:
        torch.set_num_threads(2)
        pooled = _embed_copy(indexed, tmp_path / "pooled", "fp32", batch_size=4,
                             progress=threads_seen(pooled_threads))
        assert torch.get_num_threads() == 2  # this thread's count is left as it was
        torch.set_num_threads(1)
        serial = _embed_copy(indexed, tmp_path / "serial", "fp32", batch_size=4,
                             progress=threads_seen(serial_threads))
    finally:
        torch.set_num_threads(before)
    assert {n for n in pooled_threads if n.startswith("soundatlas-embed")} == \
        {"soundatlas-embed_0", "soundatlas-embed_1"}
    assert not any(n.startswith("soundatlas-embed") for n in serial_threads)
    assert not any(t.name.startswith("soundatlas-embed") for t in threading.enumerate())
    assert pooled["summary"].n_embedded == serial["summary"].n_embedded > 8
    np.testing.assert_array_equal(pooled["ids"], serial["ids"])
    np.testing.assert_array_equal(pooled["points"], serial["points"])
    for a, b in zip(pooled["trajs"], serial["trajs"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pooled["vectors"], serial["vectors"])
    # each of the pool's threads computes on one core: two batches at once, not four threads
    try:
        torch.set_num_threads(2)
        pool = _thread_pool(build_model())
        assert list(pool.map(lambda _: torch.get_num_threads(), range(4))) == [1] * 4
        pool.shutdown()
        torch.set_num_threads(1)
        assert _thread_pool(build_model()) is None  # one thread: no pool
    finally:
        torch.set_num_threads(before)


def test_auto_is_bf16_where_it_is_native_and_bad_values_are_refused():
    assert inference_precision("auto") == ("bf16" if native_bf16() else "fp32")
    assert inference_precision("fp32") == "fp32" and inference_precision("bf16") == "bf16"
    assert PRECISIONS == ("auto", "fp32", "bf16")
    with pytest.raises(ParameterError, match="precision='fp16'"):
        inference_precision("fp16")
    with pytest.raises(ParameterError, match="precision='half'"):
        build_model().embed_frames(np.zeros((12, 192), np.float32), precision="half")
    out = build_model().embed_frames(np.zeros((12, 192), np.float32), precision="bf16")
    assert out.dtype == torch.float32 and out.shape == (12, 3)


def test_the_command_line_says_which_precision_and_refuses_an_unknown_one(indexed, tmp_path):
    atlas_dir = tmp_path / "atlas"
    shutil.copytree(indexed, atlas_dir)
    run = subprocess.run([str(BIN), "embed", "--atlas", str(atlas_dir), "--precision", "fp32",
                          "--json", "-q"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"
    assert summary["n_embedded"] > 0 and summary["earlier_precision"] is None
    # asked for another arithmetic, embed says the points made before keep theirs
    again = subprocess.run([str(BIN), "embed", "--atlas", str(atlas_dir), "--precision", "bf16",
                            "-q"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"the {summary['n_embedded']} samples embedded before keep their fp32 points" in (
        again.stdout)
    # what it says to run makes every point again, in the arithmetic asked for
    command = again.stdout.split("`")[1].split()
    redo = subprocess.run([str(BIN), *command[1:], "--atlas", str(atlas_dir), "--json", "-q"],
                          capture_output=True, text=True)
    assert redo.returncode == 0, redo.stderr
    redone = json.loads(redo.stdout)
    assert (redone["n_embedded"], redone["n_already"], redone["precision"],
            redone["earlier_precision"]) == (summary["n_embedded"], 0, "bf16", None)
    bad = subprocess.run([str(BIN), "embed", "--atlas", str(atlas_dir), "--precision", "fp16"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "fp16" in bad.stderr
    if not torch.cuda.is_available():
        gpu = subprocess.run([str(BIN), "embed", "--atlas", str(atlas_dir), "--device", "cuda"],
                             capture_output=True, text=True)
        assert gpu.returncode == 1 and "no CUDA device" in gpu.stderr
        assert "Traceback" not in gpu.stderr


def test_an_upload_is_embedded_in_the_arithmetic_the_atlas_recorded(both):
    """What `embed` recorded decides how the page embeds a file that is not in the atlas: a copy
    of a library file lands where that file is (bf16 to its rounding, which depends on how many
    files a pass holds; fp32 to float rounding)."""
    from soundatlas.embed import embed_outside_file

    for precision, tol in (("fp32", 1e-5), ("bf16", 0.01)):
        with Atlas.open(both[precision]["dir"]) as atlas:
            assert atlas.embed_precision("default") == precision
            artifact, registration = resolve_model(atlas, "default")
            ids, points = atlas.points(registration.id)
            extent = float(np.max(points.max(axis=0) - points.min(axis=0)))
            rec = atlas.samples([int(ids[5])])[0]
            _, _, traj, point = embed_outside_file(atlas, artifact, atlas.library / rec.path)
            assert np.max(np.abs(point - points[5])) <= tol * extent, precision
            assert np.max(np.abs(traj - atlas.trajectory(registration.id, rec.id))) <= \
                tol * extent, precision
