"""Short one-shots are samples: clicks and hats of 5-50 ms are indexed, embedded and mapped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from soundatlas.atlas import Atlas

BIN = Path(sys.executable).parent / "soundatlas"
LENGTHS_MS = (5, 8, 12, 17, 25, 33, 45, 50)


def _one_shots(root: Path) -> Path:
    """A decaying 2 kHz click and a bright noise hat at every length, at 44.1 and 48 kHz."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for sr in (44100, 48000):
        for ms in LENGTHS_MS:
            n = int(sr * ms / 1000)
            t = np.arange(n) / sr
            click = 0.5 * np.exp(-t * 300) * np.sin(2 * np.pi * 2000 * t)
            hat = 0.3 * np.exp(-t * 150) * np.diff(rng.standard_normal(n + 1))
            sf.write(root / f"click_{ms:02d}ms_{sr}.wav", click.astype(np.float32), sr)
            sf.write(root / f"hat_{ms:02d}ms_{sr}.wav", hat.astype(np.float32), sr)
    return root


def test_clicks_and_hats_of_5_to_50_ms_are_mapped_not_refused(tmp_path):
    lib = _one_shots(tmp_path / "lib")
    run = subprocess.run([str(BIN), "map", str(lib), "--json", "-q", "--jobs", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    n_files = 2 * 2 * len(LENGTHS_MS)
    assert summary["index"]["n_failed"] == 0, summary["index"]
    assert summary["embed"]["n_embedded"] == n_files
    with Atlas.open(lib / ".soundatlas") as atlas:
        assert atlas.n_samples() == n_files and atlas.failures() == []
        model = atlas.model("default")
        ids, points = atlas.points(model.id)
        assert len(ids) == n_files and np.isfinite(points).all()
        for sid in ids:
            t = atlas.trajectory(model.id, int(sid))
            assert len(t) >= 1 and np.isfinite(t).all()
        paths = atlas.paths(int(i) for i in ids)
    # clicks lie nearer clicks than hats do: the map places them by what they sound like
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    kind = np.array([paths[int(i)].split("_")[0] for i in ids])
    nearest = kind[np.argmin(d, axis=1)]
    assert np.mean(nearest == kind) >= 0.75
