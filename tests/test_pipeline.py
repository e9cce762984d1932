"""The batch runner: order, bounded work, and surviving a worker that dies."""

from __future__ import annotations

import os

import pytest

from soundatlas.errors import AudioReadError
from soundatlas.pipeline import analyse_files, content_hash, isolate, run_batches


def square_or_die(batch: list[int]) -> list[int]:
    """A stage whose process really dies (as a native crash would) on a negative item."""
    for x in batch:
        if x < 0:
            os._exit(11)
    return [x * x for x in batch]


def test_results_come_in_submission_order_from_processes():
    batches = [[i, i + 1] for i in range(0, 40, 2)]
    assert list(run_batches(square_or_die, batches, n_jobs=2)) == [square_or_die(b) for b in batches]


def test_a_dying_worker_is_isolated_and_the_run_goes_on():
    batches = [[1, 2], [3, -4, -5, 5], [6], [7, 8], [9, -10], [11]]  # two culprits in one batch
    crashed = []

    def on_crash(batch):
        return isolate(square_or_die, batch, crashed=lambda x: crashed.append(x) or None)

    out = list(run_batches(square_or_die, batches, n_jobs=2, on_crash=on_crash))
    flat = [x for r in out for x in r if x is not None]
    assert sorted(crashed) == [-10, -5, -4]
    assert sorted(flat) == sorted(x * x for b in batches for x in b if x >= 0)


def test_without_a_crash_handler_the_error_propagates():
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(run_batches(square_or_die, [[1], [-1], [2]], n_jobs=2))


def test_analyse_files_returns_errors_as_values_and_pickles_them(tmp_path):
    import pickle

    from conftest import write_tone

    good = write_tone(tmp_path / "good.wav", 440.0, seconds=0.5)
    bad = tmp_path / "bad.wav"
    bad.write_text("hello")
    res = analyse_files([str(good), str(bad), str(tmp_path / "missing.wav")])
    assert res[0].features.shape == (11, 192) and res[0].hash == content_hash(good)
    assert isinstance(res[1], AudioReadError) and "not audio" in res[1].reason
    assert isinstance(res[2], AudioReadError) and "does not exist" in res[2].reason
    back = pickle.loads(pickle.dumps(res[1]))
    assert (back.path, back.reason) == (res[1].path, res[1].reason)


def test_moved_files_are_not_decoded(tmp_path):
    from conftest import write_tone
    from soundatlas.pipeline import Moved

    f = write_tone(tmp_path / "a.wav", 440.0, seconds=0.5)
    res = analyse_files([str(f)], skip_hashes=frozenset({content_hash(f)}))
    assert isinstance(res[0], Moved)


def test_content_hash_of_large_files_reads_head_and_tail(tmp_path):
    a = tmp_path / "a.bin"
    data = bytearray(os.urandom(9 << 20))
    a.write_bytes(data)
    h1 = content_hash(a)
    data[len(data) // 2] ^= 0xFF  # the middle is not read
    a.write_bytes(data)
    assert content_hash(a) == h1
    data[-1] ^= 0xFF
    a.write_bytes(data)
    assert content_hash(a) != h1


def test_workers_that_cannot_start_give_one_clear_error(tmp_path):
    """A script without a __main__ guard: spawned workers re-run it and die at start-up."""
    import subprocess
    import sys

    from conftest import write_tone

    for i in range(3):
        write_tone(tmp_path / "lib" / f"t{i}.wav", 300.0 + i, seconds=0.3)
    script = tmp_path / "unguarded.py"
    # spawned workers import the script again, reach index_library while bootstrapping and die
    script.write_text(
        "from soundatlas.indexing import index_library\n"
        f"index_library({str(tmp_path / 'lib')!r}, atlas_dir={str(tmp_path / 'a')!r}, n_jobs=2)\n"
    )
    proc = subprocess.run([sys.executable, str(script), "go"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "__main__" in proc.stderr and "worker processes die" in proc.stderr
