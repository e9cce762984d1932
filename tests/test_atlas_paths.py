"""Paths that are not valid UTF-8 (Linux allows any bytes in a name): a library that cannot be
recorded is refused in one line before anything is made, and an atlas folder or command line
holding such bytes still indexes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError

BIN = os.path.join(os.path.dirname(sys.executable), "soundatlas")

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="names that are not UTF-8 are made on Linux")


def _run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300,
                          errors="backslashreplace", env={**os.environ, "CI": "1"})


def _folder(parent, name: bytes) -> bytes:
    path = os.path.join(os.fsencode(parent), name)
    os.mkdir(path)
    return path


def test_a_library_path_that_is_not_utf8_is_refused_in_one_line_and_nothing_is_made(tmp_path):
    lib = _folder(tmp_path, b"lib7\xff")
    out = _run("index", lib)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "lib7\\xff is not valid UTF-8" in out.stderr, out.stderr
    assert os.listdir(lib) == []  # no atlas folder, not even its lock

    atlas_dir = tmp_path / "atlas"
    with pytest.raises(ParameterError, match="not valid UTF-8"):
        Atlas.create(atlas_dir, library=os.fsdecode(lib))
    assert not atlas_dir.exists()


def test_an_atlas_folder_that_is_not_utf8_indexes_and_its_lock_names_the_command(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    atlas_dir = _folder(tmp_path, b"atlas\xff")
    out = _run("index", str(lib), "--atlas", atlas_dir, "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    with open(os.path.join(atlas_dir, b"writer.lock"), "rb") as f:
        holder = f.read().decode("utf-8")
    assert "--atlas " in holder and "atlas\\xff" in holder, holder
    with Atlas.open(os.fsdecode(atlas_dir)) as atlas:
        assert atlas.library == lib.resolve()


def test_the_lock_names_a_command_with_long_paths_whole(tmp_path):
    """The writer lock quotes its holder's command line, which the refusal of a second writer
    shows: an atlas deep in a music library keeps its whole path there (it was cut at 200
    characters)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    atlas_dir = tmp_path.joinpath(*[f"{i}-" + "sample library folder " * 4 for i in range(4)])
    assert len(str(atlas_dir)) > 400
    out = _run("index", str(lib), "--atlas", str(atlas_dir), "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    holder = (atlas_dir / "writer.lock").read_text()
    assert f"--atlas {atlas_dir}" in holder and " ..." not in holder, holder
