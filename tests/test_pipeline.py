"""The batch runner: order, bounded work, and surviving a worker that dies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from soundatlas.errors import AudioReadError
from soundatlas.pipeline import analyse_files, content_hash, isolate, run_batches

from pagecache import evict, skip_unless_page_cache_shows, wait_seen_resident


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
    assert (res[1].lasting, res[2].lasting) == (True, False)  # the bytes; the file system
    for err in res[1:]:
        back = pickle.loads(pickle.dumps(err))
        assert (back.path, back.reason, back.lasting) == (err.path, err.reason, err.lasting)


def _open_failing(monkeypatch, reasons: list[str]):
    """``audio._open`` refusing a file with the next of ``reasons`` (lasting, as libsndfile
    names a read error by what it made of the bytes it did not get), then opening it."""
    from soundatlas import audio

    real = audio._open

    def _open(path):
        if reasons:
            raise AudioReadError(path, reasons.pop(0), lasting=True)
        return real(path)

    monkeypatch.setattr(audio, "_open", _open)


def test_a_failure_blamed_on_the_bytes_is_decoded_again_before_it_is_believed(tmp_path,
                                                                            monkeypatch):
    from conftest import write_tone
    from soundatlas.pipeline import Analysis

    f = str(write_tone(tmp_path / "a.wav", 440.0, seconds=0.5))
    _open_failing(monkeypatch, ["not audio: format not recognised"])  # a read error that passed
    assert isinstance(analyse_files([f])[0], Analysis)
    _open_failing(monkeypatch, ["not audio: format not recognised"] * 2)  # the bytes, twice
    (err,) = analyse_files([f])
    assert (err.reason, err.lasting) == ("not audio: format not recognised", True)
    _open_failing(monkeypatch, ["not audio: format not recognised", "corrupt audio data: x"])
    (err,) = analyse_files([f])  # another story each time: not the bytes
    assert (err.reason, err.lasting) == ("corrupt audio data: x", False)


def test_a_file_whose_bytes_cannot_be_read_is_an_io_failure_not_bad_bytes(tmp_path, monkeypatch):
    import errno

    from conftest import write_tone
    from soundatlas import pipeline

    f = str(write_tone(tmp_path / "a.wav", 440.0, seconds=0.5))

    def unreadable(path):
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(pipeline, "content_hash", unreadable)
    _open_failing(monkeypatch, ["too short: 0 frames"])  # what libsndfile made of no bytes
    (err,) = analyse_files([f])
    assert err.reason.startswith("I/O error") and err.lasting is False


def test_moved_files_are_not_decoded(tmp_path):
    from conftest import write_tone
    from soundatlas.pipeline import Moved

    f = write_tone(tmp_path / "a.wav", 440.0, seconds=0.5)
    res = analyse_files([str(f)], skip_hashes=frozenset({content_hash(f)}))
    assert isinstance(res[0], Moved)


def test_content_hash_of_a_large_file_reads_all_of_it(tmp_path):
    """A byte changed in the middle of a long file changes its hash (the fingerprint of size,
    head and tail that an older soundatlas took, and still matches, does not see it)."""
    from soundatlas.pipeline import legacy_fingerprint

    a = tmp_path / "a.bin"
    data = bytearray(os.urandom(9 << 20))
    a.write_bytes(data)
    h1, f1 = content_hash(a), legacy_fingerprint(a)
    assert h1 != f1
    data[len(data) // 2] ^= 0xFF
    a.write_bytes(data)
    assert content_hash(a) != h1 and legacy_fingerprint(a) == f1
    data[-1] ^= 0xFF
    a.write_bytes(data)
    assert legacy_fingerprint(a) != f1
    small = tmp_path / "small.bin"
    small.write_bytes(data[: 4 << 20])  # up to 4 MiB both read everything
    assert legacy_fingerprint(small) == content_hash(small)


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


# --- read-ahead: a batch's reads in flight together ---------------------------------------------

@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_read_ahead_brings_a_batch_into_memory(tmp_path):
    import threading

    from soundatlas.pipeline import read_ahead

    paths = []
    for i in range(6):  # 1 MiB each: more than one advice of 128 KiB
        p = tmp_path / f"f{i}.wav"
        with open(p, "wb") as f:
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        evict(p)
        paths.append(p)
    skip_unless_page_cache_shows(paths)
    for future in read_ahead(paths):
        future.result(timeout=30)
    # the advice starts the reads and returns; wait (bounded) until the disk has answered
    assert wait_seen_resident(paths) == [1.0] * len(paths)
    threads = [t for t in threading.enumerate() if t.name.startswith("soundatlas-read-ahead")]
    assert threads and all(t.daemon for t in threads)  # never keep a process from exiting


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_read_ahead_asks_in_pieces_for_the_head(tmp_path, monkeypatch):
    """Linux reads at most max(read_ahead_kb, max_sectors_kb) of one advice (128 KiB by
    default): a long file's head (8 MiB) is asked for in pieces that size."""
    from soundatlas import pipeline

    asked = []
    real = os.posix_fadvise

    def recorded(fd, offset, length, advice):
        asked.append((offset, length))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", recorded)
    big = tmp_path / "long.wav"
    size = (12 << 20) + 12345
    with open(big, "wb") as f:
        f.truncate(size)
    pipeline._will_need(str(big))
    piece = pipeline._AHEAD_PIECE
    assert max(length for _, length in asked) <= piece
    covered = set()
    for offset, length in asked:
        covered.update(range(offset // 4096, -(-(offset + length) // 4096)))
    assert covered == set(range(0, (8 << 20) // 4096))
    asked.clear()
    empty = tmp_path / "empty.wav"
    empty.touch()
    pipeline._will_need(str(empty))
    assert asked == []  # a length of 0 would mean "to the end"


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_read_ahead_passes_over_what_it_cannot_read(tmp_path):
    """A FIFO named like audio does not hold a thread in open(); a missing file raises nothing
    (the read that follows says what is wrong)."""
    from soundatlas.pipeline import read_ahead

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    futures = read_ahead([fifo, tmp_path / "gone.wav", tmp_path, "nul\0byte.wav"])
    assert [f.result(timeout=30) for f in futures] == [None] * 4


# --- workers end with the process that started them ----------------------------------------------

ORPHAN_SCRIPT = r"""
import os, sys, threading
from pathlib import Path

def stuck(batch):  # each worker says who it is, then never returns
    Path(sys.argv[1], str(os.getpid())).touch()
    threading.Event().wait()

if __name__ == "__main__":
    if sys.argv[2] == "spawn":  # index's and embed's pools
        from soundatlas.pipeline import run_batches
        for _ in run_batches(stuck, [[i] for i in range(8)], n_jobs=2):
            pass
    else:  # the demo library's: workers are the fork server's children, not ours
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from soundatlas.pipeline import end_with_parent
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(sys.argv[2]),
                                 initializer=end_with_parent, initargs=(os.getpid(),)) as pool:
            for f in [pool.submit(stuck, [i]) for i in range(8)]:
                f.result()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
        return "Z" not in state.split()[1]  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_workers_end_when_the_process_that_started_them_is_killed(tmp_path, context):
    """``kill -9`` of an indexing process: its workers, busy or waiting, end too (they once
    stayed blocked for good, holding their memory)."""
    import signal
    import subprocess
    import sys
    import threading

    script = tmp_path / "stuck.py"
    script.write_text(ORPHAN_SCRIPT)
    seen = tmp_path / "pids"
    seen.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(seen), context])
    tick = threading.Event()
    try:
        for _ in range(1200):  # until both workers are in their batch (bounded: 60 s)
            if len(list(seen.iterdir())) == 2 or proc.poll() is not None:
                break
            tick.wait(0.05)
        workers = [int(p.name) for p in seen.iterdir()]
        assert len(workers) == 2, proc.poll()
        assert all(_alive(pid) for pid in workers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for _ in range(600):  # they notice within a second or two (bounded: 30 s)
        if not any(_alive(pid) for pid in workers):
            break
        tick.wait(0.05)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them to the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_a_pool_worker_leaves_ctrl_c_to_its_parent():
    """Ctrl-C reaches every process of the terminal's group: a worker waiting for its next batch
    took it too, printed a traceback and died under its pool. It ignores it; the parent, which
    gets it as well, stops the pool."""
    import signal

    from soundatlas.pipeline import _process_pool

    pool = _process_pool(1)
    try:
        pid = pool.submit(os.getpid).result(timeout=120)  # started: its initializer has run
        os.kill(pid, signal.SIGINT)  # as the terminal sends it, while the worker waits
        assert pool.submit(os.getpid).result(timeout=120) == pid  # the same worker goes on
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


STOP_SCRIPT = r"""
import os, sys, threading
from pathlib import Path

def stuck(batch):  # a batch as long as it gets: it never returns
    Path(sys.argv[1], str(os.getpid())).touch()
    threading.Event().wait()

if __name__ == "__main__":
    from soundatlas.pipeline import run_batches
    try:
        for _ in run_batches(stuck, [[i] for i in range(4)], n_jobs=2):
            pass
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(130)
"""


def test_ctrl_c_stops_the_pool_without_waiting_for_its_batches(tmp_path):
    """Workers leave Ctrl-C to the command; the command then ended only once each batch in a
    worker had run to its end (minutes for long files; this one never ends). It ends its
    workers and stops."""
    import signal
    import threading

    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(marks)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        tick = threading.Event()
        for _ in range(6000):  # until both workers hold a batch (at most 2 minutes)
            if len(list(marks.iterdir())) >= 2 or proc.poll() is not None:
                break
            tick.wait(0.02)
        workers = [int(p.name) for p in marks.iterdir()]
        assert len(workers) == 2, proc.poll()
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
        out, err = proc.communicate(timeout=120)  # the batches never end: it must not wait
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130 and out.strip() == "stopped", (out, err)
    assert "Traceback" not in err, err
