"""Shared fixtures: generated tone libraries and a small rendered instrument library."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SMALL_CLASSES = ["flute", "trombone", "violin"]


def write_tone(path: Path, freq: float, *, seconds: float = 1.0, sr: int = 44100,
               amp: float = 0.3, seed: int = 0, noise: float = 0.0) -> Path:
    """A decaying sine (plus optional noise) as 16-bit WAV."""
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * freq * t) * np.exp(-t * 1.5)
    if noise:
        y = y + noise * np.random.default_rng(seed).standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    return path


def make_tone_library(root: Path, n_per_folder: int = 6, folders=("low", "mid", "high")) -> Path:
    """Folders of tones whose pitch range differs by folder; a manifest with instrument/pitch."""
    base = {"low": 36, "mid": 60, "high": 84}
    rows = ["path,instrument,pitch"]
    for f_i, folder in enumerate(folders):
        for i in range(n_per_folder):
            midi = base.get(folder, 48 + 12 * f_i) + i
            freq = 440.0 * 2 ** ((midi - 69) / 12)
            rel = f"{folder}/{folder}_{midi:03d}.wav"
            write_tone(root / rel, freq, seconds=0.6 + 0.1 * i, seed=midi, noise=0.01)
            rows.append(f"{rel},{folder},{midi}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tone_library(tmp_path) -> Path:
    return make_tone_library(tmp_path / "lib")


@pytest.fixture(scope="session")
def rendered_library_master(tmp_path_factory) -> Path:
    """A small real render (3 classes, one velocity, both articulations), made once."""
    from soundatlas.demo import render_library

    out = tmp_path_factory.mktemp("rendered") / "lib"
    render_library(out, classes=SMALL_CLASSES, velocities=(80,), n_jobs=2)
    return out


@pytest.fixture(scope="session")
def indexed_for_default(rendered_library_master, tmp_path_factory) -> Path:
    """The small render indexed with the shipped model's CQT, nothing embedded: an atlas to copy,
    never to change."""
    from soundatlas.indexing import cqt_for_model, index_library

    lib = tmp_path_factory.mktemp("indexed-for-default") / "lib"
    shutil.copytree(rendered_library_master, lib)
    index_library(lib, n_jobs=1, params=cqt_for_model(lib, None, "default"))
    return lib / ".soundatlas"


@pytest.fixture
def rendered_library(rendered_library_master, tmp_path) -> Path:
    """A private copy of the small render, free to modify."""
    dst = tmp_path / "rendered"
    shutil.copytree(rendered_library_master, dst)
    return dst


def copied_with_copies(mapped: Path, dst: Path, paths, *, model: str = "m", **embed) -> Path:
    """``mapped``'s atlas and library copied to ``dst`` (``atlas``, ``lib``), each of ``paths``
    (relative to the library) copied again into the library's folder ``copies/`` under its
    own name, then indexed (the atlas follows its copied library) and embedded with
    ``model`` (``embed``: ``embed_atlas``'s options): the atlas directory."""
    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.embed import embed_atlas
    from soundatlas.indexing import index_library

    with Atlas.open(mapped) as atlas:
        library = atlas.library
    shutil.copytree(library, dst / "lib")
    shutil.copytree(mapped, dst / "atlas")
    (dst / "lib" / "copies").mkdir()
    for path in paths:
        shutil.copy(dst / "lib" / path, dst / "lib" / "copies" / Path(path).name)
    index_library(dst / "lib", atlas_dir=dst / "atlas", n_jobs=1)
    with Atlas.open(dst / "atlas", write=True) as atlas:
        artifact, reg = resolve_model(atlas, model)
        embed_atlas(atlas, artifact, reg.id, **embed)
    return dst / "atlas"


def map_with_shipped_model(lib: Path, classes: dict) -> Path:
    """Render ``classes`` (instrument -> (program, low, high)) at velocity 80 into ``lib``, index
    it and embed it with the shipped default model; the atlas directory."""
    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.demo import render_library
    from soundatlas.embed import embed_atlas, ensure_registered
    from soundatlas.indexing import cqt_for_model, index_library

    render_library(lib, classes=classes, velocities=(80,), n_jobs=1)
    index_library(lib, n_jobs=1, params=cqt_for_model(lib, None, "default"))
    with Atlas.open(lib / ".soundatlas", write=True) as atlas:
        artifact, registration = resolve_model(atlas, "default")
        embed_atlas(atlas, artifact, ensure_registered(atlas, artifact, registration))
    return lib / ".soundatlas"



# what each migration added (soundatlas.atlas.schema), dropped to make an atlas of an older schema
_ADDED_BY_MIGRATION = {
    3: "DROP TABLE similarity_vectors; DROP TABLE similarity_spaces;",
    4: "DROP TRIGGER embedding_counts_model; DROP TRIGGER embedding_counts_added;"
       " DROP TRIGGER embedding_counts_removed; DROP TABLE embedding_counts;",
    5: "DROP TRIGGER IF EXISTS path_trigrams_added; DROP TRIGGER IF EXISTS path_trigrams_removed;"
       " DROP TRIGGER IF EXISTS path_trigrams_moved; DROP TABLE IF EXISTS path_trigrams;"
       " DROP INDEX samples_non_ascii;",
    6: "DROP TABLE collection_items; DROP TABLE collections; DROP TABLE user_labels;"
       " DROP TABLE user_items;",
    7: "DROP TABLE audio_labels;",
    8: "ALTER TABLE segments DROP COLUMN checksum;"
       " ALTER TABLE embedding_segments DROP COLUMN checksum;",
    9: "DROP TABLE legacy_followed; DROP TABLE legacy_holders;"
       " DROP INDEX collection_items_hash;",
    10: "ALTER TABLE failures DROP COLUMN decoded_with;",
    11: "DROP INDEX embeddings_sample; DROP INDEX similarity_vectors_sample;",
    12: "",  # data only: tags and collection names composed
}


def downgrade_schema(atlas_dir: Path, version: int) -> None:
    """Turn an atlas into one of schema ``version``, as an older soundatlas made it."""
    import sqlite3

    from soundatlas.atlas import SCHEMA_VERSION

    assert set(_ADDED_BY_MIGRATION) == set(range(3, SCHEMA_VERSION + 1)), "a migration to undo"
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:
        for v in range(SCHEMA_VERSION, version, -1):
            conn.executescript(_ADDED_BY_MIGRATION[v])
        conn.execute(f"PRAGMA user_version = {version}")


@contextlib.contextmanager
def writer_lock_held(atlas_dir: Path):
    """Another process holds ``atlas_dir``'s writer lock (as a running index or embed does)
    until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path;"
         "from soundatlas.atlas.core import lock_writer;"
         f"lock_writer(Path({str(atlas_dir)!r})); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("")


def where_modes_bind() -> list[str]:
    """The command prefix under which a folder's mode binds: none for a user; for root (who
    overrides it) ``setpriv`` without that power. Skips where root cannot drop it here."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv: root overrides folder modes, so one cannot refuse a write")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"setpriv cannot drop the power to override modes here: "
                    f"{probe.stderr.strip()}")
    return prefix


def renders_until(server, **want) -> dict:
    """Poll ``GET /api/renders`` of a running ``ThreadedServer`` until its counts include
    ``want`` (30 s at most); its last answer."""
    import time

    deadline = time.monotonic() + 30
    while True:
        status = server.get("/api/renders")
        if all(status[k] == v for k, v in want.items()):
            return status
        assert time.monotonic() < deadline, (want, status)
        time.sleep(0.02)


def run_in_process(capsys, *args):
    """``soundatlas ARGS`` run in the test's own process, quicker than the console script (each
    command keeps tests of that too): its exit status, stdout and stderr as a process's."""
    from types import SimpleNamespace

    from soundatlas.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage error
        rc = exc.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)
