"""`soundatlas index`: scanning, incremental and resumable updates, labels, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import downgrade_schema, make_tone_library, write_tone
from soundatlas.atlas import SCHEMA_VERSION, Atlas
from soundatlas.cqt import cqt
from soundatlas import audio
from soundatlas.errors import AtlasError, ParameterError
from soundatlas.indexing import index_library
from soundatlas.labels import LabelSources


def index(lib, atlas=None, **kw):
    kw.setdefault("n_jobs", 1)
    return index_library(lib, atlas_dir=atlas, **kw)


def paths_in(atlas_dir) -> set[str]:
    with Atlas.open(atlas_dir) as a:
        return {r.path for r in a.samples()}


def test_index_stores_features_equal_to_the_cqt_of_the_decoded_file(tone_library):
    s = index(tone_library)
    assert s.n_indexed == s.n_scanned == s.n_samples == 18 and s.n_failed == 0
    with Atlas.open(tone_library / ".soundatlas") as a:
        for rec in a.samples():
            y = audio.load(tone_library / rec.path).y
            expected = cqt(y)
            got = a.features(rec)
            assert got.shape == expected.shape == (rec.n_frames, 192)
            np.testing.assert_allclose(got, expected, atol=0.01, rtol=0.002)  # float16 storage
            assert rec.orig_sr == 44100 and rec.n_channels == 1 and not rec.truncated


def test_features_do_not_depend_on_how_files_were_batched(tone_library, tmp_path):
    """Each file alone in one process, or many to a batch in two: the same stored features, bit
    for bit (the CQT of a clip depends on that clip alone, tests/test_cqt.py)."""
    index(tone_library, tmp_path / "one", batch_size=1, n_jobs=1)
    index(tone_library, tmp_path / "many", batch_size=18, n_jobs=2)
    with Atlas.open(tmp_path / "one") as one, Atlas.open(tmp_path / "many") as many:
        by_path = {r.path: r for r in many.samples()}
        records = list(one.samples())
        assert len(records) == len(by_path) == 18
        for rec in records:
            a, b = one.features(rec), many.features(by_path[rec.path])
            assert a.shape == b.shape
            assert np.array_equal(a, b), f"{rec.path}: {int((a != b).sum())} values differ"


def test_labels_from_manifest_folder_and_name_pattern(tone_library):
    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas") as a:
        labels = {r.path: a.sample_labels(r.id) for r in a.samples()}
    assert labels["low/low_036.wav"] == {"folder": "low", "instrument": "low", "pitch": "36"}
    # name pattern: the MIDI number in the file name
    index(tone_library, label_sources=LabelSources(manifest=None, name_pattern="midi"))
    with Atlas.open(tone_library / ".soundatlas") as a:
        pitch = {r.path: a.sample_labels(r.id).get("pitch") for r in a.samples()}
        assert pitch["high/high_089.wav"] == "89"
        assert "instrument" not in a.label_summary()  # sources replaced, old labels gone
    # sources are remembered by the next run that gives none
    s = index(tone_library)
    assert s.label_sources["name_pattern"] == "midi"


def test_a_manifest_row_names_its_file_in_either_unicode_form(tmp_path):
    import unicodedata

    lib = tmp_path / "lib"
    nfd, nfc = (unicodedata.normalize(f, "Piano/Clé_60.wav") for f in ("NFD", "NFC"))
    write_tone(lib / nfd, 262.0, seconds=0.3)  # as a Mac names it
    write_tone(lib / "Piano/Plain_62.wav", 294.0, seconds=0.3)
    (lib / "metadata.csv").write_text(f"path,instrument\n{nfc},piano\nPiano/Plain_62.wav,piano\n",
                                      encoding="utf-8")  # as typed elsewhere
    s = index(lib)
    assert s.label_problems == [] and s.label_counts["instrument"] == 2
    with Atlas.open(lib / ".soundatlas") as a:
        assert set(a.labels("instrument").values()) == {"piano"} and len(a.labels("instrument")) == 2


def test_note_names_in_file_names_become_midi_pitch(tmp_path):
    lib = tmp_path / "lib"
    for name in ["Violin_C#4_ff.wav", "Violin_Db4_pp.wav", "piano-A4.wav", "no pitch here.wav"]:
        write_tone(lib / name, 300.0, seconds=0.3)
    index(lib, label_sources=LabelSources(name_pattern="note"))
    with Atlas.open(lib / ".soundatlas") as a:
        pitch = {r.path: a.sample_labels(r.id).get("pitch") for r in a.samples()}
    assert pitch == {"Violin_C#4_ff.wav": "61", "Violin_Db4_pp.wav": "61", "piano-A4.wav": "69",
                     "no pitch here.wav": None}


def test_second_run_touches_nothing(tone_library):
    index(tone_library)
    before = _segment_files(tone_library)
    s = index(tone_library)
    assert (s.n_indexed, s.n_unchanged, s.n_moved, s.n_removed) == (0, 18, 0, 0)
    assert _segment_files(tone_library) == before


def test_changed_file_is_reanalysed_in_place(tone_library):
    index(tone_library)
    target = tone_library / "mid/mid_060.wav"
    with Atlas.open(tone_library / ".soundatlas") as a:
        old = {r.path: r for r in a.samples()}[target.relative_to(tone_library).as_posix()]
        old_features = a.features(old)
    write_tone(target, 2000.0, seconds=1.5)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    s = index(tone_library)
    assert (s.n_indexed, s.n_unchanged) == (1, 17)
    with Atlas.open(tone_library / ".soundatlas") as a:
        new = {r.path: r for r in a.samples()}[old.path]
        assert new.n_frames == 31 and new.hash != old.hash
        assert not np.allclose(a.features(new)[:10], old_features[:10])
        assert a.sample_labels(new.id)["instrument"] == "mid"


def test_a_file_with_a_new_date_but_the_same_content_keeps_its_record(tone_library):
    """`touch`, or a copy that did not keep the dates: the file is read to hash it, not analysed,
    and keeps its sample id (its embeddings and split), features and labels."""
    index(tone_library)
    touched = tone_library / "mid/mid_060.wav"
    rewritten = tone_library / "low/low_037.wav"
    with Atlas.open(tone_library / ".soundatlas") as a:
        before = {r.path: r for r in a.samples()}
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    data = rewritten.read_bytes()
    rewritten.unlink()
    rewritten.write_bytes(data)  # a new inode and date, the same bytes
    os.utime(rewritten, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    s = index(tone_library)
    assert (s.n_indexed, s.n_touched, s.n_unchanged, s.n_moved, s.n_removed) == (0, 2, 16, 0, 0)
    with Atlas.open(tone_library / ".soundatlas") as a:
        after = {r.path: r for r in a.samples()}
        for f in (touched, rewritten):
            rel = f.relative_to(tone_library).as_posix()
            old, new = before[rel], after[rel]
            assert (new.id, new.segment, new.frame_offset, new.hash) == (
                old.id, old.segment, old.frame_offset, old.hash)
            assert new.mtime_ns == f.stat().st_mtime_ns != old.mtime_ns
            assert a.sample_labels(new.id) == a.sample_labels(old.id)
    again = index(tone_library)  # the new dates are stored: nothing to look at
    assert (again.n_touched, again.n_unchanged) == (0, 18)


def test_moved_and_renamed_files_keep_their_record_without_reanalysis(tone_library):
    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas") as a:
        before = {r.path: r for r in a.samples()}
    (tone_library / "elsewhere").mkdir()
    shutil.move(tone_library / "low/low_037.wav", tone_library / "elsewhere/renamed.wav")
    s = index(tone_library)
    assert (s.n_indexed, s.n_moved, s.n_removed) == (0, 1, 0)
    with Atlas.open(tone_library / ".soundatlas") as a:
        after = {r.path: r for r in a.samples()}
        assert "low/low_037.wav" not in after
        moved = after["elsewhere/renamed.wav"]
        assert moved.id == before["low/low_037.wav"].id
        assert moved.segment == before["low/low_037.wav"].segment
        assert a.sample_labels(moved.id)["folder"] == "elsewhere"


def test_copy_of_a_moved_file_is_analysed_not_lost(tone_library):
    index(tone_library)
    src = tone_library / "low/low_037.wav"
    shutil.copy2(src, tone_library / "copy_a.wav")
    shutil.move(src, tone_library / "copy_b.wav")
    s = index(tone_library)
    assert s.n_moved == 1 and s.n_indexed == 1 and s.n_removed == 0
    assert {"copy_a.wav", "copy_b.wav"} <= paths_in(tone_library / ".soundatlas")


def test_deleted_files_are_forgotten_and_their_storage_freed(tone_library):
    index(tone_library, batch_size=6)
    shutil.rmtree(tone_library / "high")
    s = index(tone_library, batch_size=6)
    assert s.n_removed == 6 and s.n_samples == 12
    assert not any(p.startswith("high/") for p in paths_in(tone_library / ".soundatlas"))
    with Atlas.open(tone_library / ".soundatlas") as a:
        n_segments = a.conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    assert n_segments == 2 and len(_segment_files(tone_library)) == 2


def test_failed_file_fixed_later_is_indexed(tone_library):
    bad = tone_library / "mid/broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    s = index(tone_library)
    assert [p for p, _ in s.failures] == ["mid/broken.wav"]
    write_tone(bad, 500.0)
    s = index(tone_library)
    assert s.failures == [] and "mid/broken.wav" in paths_in(tone_library / ".soundatlas")
    bad.unlink()
    assert index(tone_library).n_removed == 1


def _swap_in_place(path: Path, data: bytes) -> None:
    """Give ``path`` other bytes of the same length and its old date: to ``index``, unchanged."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _a_broken_file_that_could_become_good(lib: Path) -> tuple[Path, bytes]:
    """``lib/mid/broken.wav``: a good tone's bytes with its header zeroed (not audio), and
    the good bytes, which a later run would analyse if it read the file again."""
    good = write_tone(lib / "mid/broken.wav", 500.0).read_bytes()
    (lib / "mid/broken.wav").write_bytes(b"\0" * 44 + good[44:])
    return lib / "mid/broken.wav", good


def test_a_file_whose_bytes_failed_is_not_read_again_until_it_changes(tone_library):
    bad, good = _a_broken_file_that_could_become_good(tone_library)
    first = index(tone_library)
    assert dict(first.failures)["mid/broken.wav"].startswith("not audio")
    assert first.n_failed_unchanged == 0
    # same size and date, other bytes: a run that decoded it again would index it
    _swap_in_place(bad, good)
    again = index(tone_library, max_duration=30)  # the same seconds as 30.0, the default
    assert again.n_failed_unchanged == 1 and again.n_indexed == 0
    assert [p for p, _ in again.failures] == ["mid/broken.wav"]  # still listed, with its reason
    assert "mid/broken.wav" not in paths_in(tone_library / ".soundatlas")
    retried = index(tone_library, retry_failed=True)
    assert (retried.n_failed_unchanged, retried.n_indexed, retried.failures) == (0, 1, [])
    assert "mid/broken.wav" in paths_in(tone_library / ".soundatlas")


def test_a_failed_file_is_read_again_when_it_or_the_decoder_settings_change(tone_library):
    bad, good = _a_broken_file_that_could_become_good(tone_library)
    index(tone_library)
    _swap_in_place(bad, good)
    # another --max-duration decides anew (a NaN past 30 s fails no 30 s read)
    s = index(tone_library, max_duration=20.0)
    assert (s.n_failed_unchanged, s.n_indexed, s.failures) == (0, 1, [])

    # a new date with the same size is a change
    bad.write_bytes(b"\0" * 44 + good[44:])
    assert index(tone_library).n_failed == 1
    bad.write_bytes(good)
    s = index(tone_library)
    assert (s.n_failed_unchanged, s.n_indexed, s.failures) == (0, 1, [])


def test_failures_recorded_before_the_decoder_settings_were_kept_are_tried_again(tone_library):
    """A failure an atlas before schema 10 recorded (or one that may pass: permission, I/O) has
    no decoder settings: every run reads the file."""
    bad, good = _a_broken_file_that_could_become_good(tone_library)
    index(tone_library)
    _swap_in_place(bad, good)
    downgrade_schema(tone_library / ".soundatlas", 9)
    s = index(tone_library)
    assert (s.n_failed_unchanged, s.n_indexed, s.failures) == (0, 1, [])


_KILLER = """
import os, signal
import soundatlas.audio as _audio
_load = _audio.load
def load(path, *args, **kwargs):
    # the OOM killer, or a decoder's native crash, on this file while the marker is there
    if "KILLME" in os.fspath(path) and os.path.exists(os.environ["KILL_MARKER"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _load(path, *args, **kwargs)
_audio.load = load
"""


def test_a_file_that_kills_its_worker_is_left_alone_only_once_it_did_so_twice(tmp_path,
                                                                              monkeypatch):
    lib = tmp_path / "lib"
    for name in ("a.wav", "b.wav", "KILLME.wav"):
        write_tone(lib / name, 440.0, seconds=0.5, sr=16000)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_KILLER)  # imported by every worker process
    marker = tmp_path / "kill"
    marker.touch()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("KILL_MARKER", str(marker))

    def decoded_with():
        with sqlite3.connect(lib / ".soundatlas" / "atlas.sqlite") as c:
            return c.execute("SELECT decoded_with FROM failures WHERE path = 'KILLME.wav'"
                             ).fetchone()[0]

    first = index(lib, n_jobs=2)
    assert [p for p, _ in first.failures] == ["KILLME.wav"] and first.n_indexed == 2
    assert decoded_with() is None  # one kill may have been the OOM killer's: tried again
    second = index(lib, n_jobs=2)
    assert (second.n_failed, second.n_failed_unchanged) == (1, 0)  # killed it again
    assert decoded_with() is not None
    third = index(lib, n_jobs=2)
    assert (third.n_failed, third.n_failed_unchanged) == (1, 1)
    marker.unlink()
    fixed = index(lib, n_jobs=2, retry_failed=True)
    assert (fixed.n_indexed, fixed.failures) == (1, [])


def test_crash_between_segment_and_commit_leaves_no_trace(tone_library, monkeypatch):
    index(tone_library)
    write_tone(tone_library / "new.wav", 700.0)
    real = Atlas.transaction

    def failing(self):
        raise sqlite3.OperationalError("simulated crash before commit")

    monkeypatch.setattr(Atlas, "transaction", failing)
    with Atlas.open(tone_library / ".soundatlas", write=True) as a:
        from soundatlas.atlas import NewSample

        with pytest.raises(sqlite3.OperationalError):
            a.commit_batch([NewSample("new.wav", 1, 1, "h", 44100, 1, 1.0, 1.0, False,
                                      np.zeros((21, 192), np.float32))])
    monkeypatch.setattr(Atlas, "transaction", real)
    n_files = len(_segment_files(tone_library))
    s = index(tone_library)
    assert s.n_indexed == 1 and len(_segment_files(tone_library)) == n_files + 1


def test_killed_run_resumes_to_the_same_atlas(tmp_path):
    lib = tmp_path / "lib"
    for i in range(240):
        write_tone(lib / f"d{i % 4}/t{i:03d}.wav", 100.0 + 7 * i, seconds=0.5, sr=16000)
    killed_atlas = tmp_path / "killed"
    # The child says when 40 or more files are committed and then holds still inside its
    # progress callback, so the kill finds it mid-run however fast the machine is.
    code = ("import sys, threading\n"
            "from soundatlas.indexing import index_library\n"
            "def hold(done, total):\n"
            "    if done >= 40:\n"
            "        print(done, flush=True)\n"
            "        threading.Event().wait()\n"
            f"index_library({str(lib)!r}, atlas_dir={str(killed_atlas)!r}, n_jobs=1, "
            "batch_size=4, progress=hold)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        n = int(proc.stdout.readline() or 0)  # blocks until the child is holding (or exits)
        assert proc.poll() is None, "indexing ended before it reached 40 files"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert 40 <= n < 240
    with sqlite3.connect(killed_atlas / "atlas.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == n
    s = index(lib, killed_atlas, batch_size=4)
    assert s.n_unchanged >= 40 and s.n_indexed + s.n_unchanged == 240 and s.n_samples == 240
    fresh = index(lib, tmp_path / "fresh")
    assert fresh.n_samples == 240
    with Atlas.open(killed_atlas) as a, Atlas.open(tmp_path / "fresh") as b:
        ra, rb = {r.path: r for r in a.samples()}, {r.path: r for r in b.samples()}
        assert ra.keys() == rb.keys()
        for path in list(ra)[::17]:
            np.testing.assert_array_equal(a.features(ra[path]), b.features(rb[path]))
        on_disk = {p.name for p in (killed_atlas / "features").iterdir()}
        named = {f for (f,) in a.conn.execute("SELECT file FROM segments")}
        assert on_disk == named  # no orphan left by the kill


def test_ctrl_c_during_index_with_workers_exits_130_and_a_rerun_finishes(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: `soundatlas index --jobs 2` and
    its workers. It exits 130 saying how to go on, with no worker's traceback, and the next
    run indexes the rest."""
    import threading

    lib = tmp_path / "lib"
    for i in range(240):
        write_tone(lib / f"d{i % 4}/t{i:03d}.wav", 100.0 + 5 * i, seconds=0.25, sr=16000)
    atlas = lib / ".soundatlas"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "soundatlas"), "index", str(lib),
                             "--jobs", "2", "--batch-size", "4", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "CI": "1"})
    try:
        tick = threading.Event()
        for _ in range(6000):  # until a few batches are committed (at most 2 minutes)
            if (atlas / "atlas.sqlite").is_file():
                with sqlite3.connect(f"file:{atlas / 'atlas.sqlite'}?mode=ro", uri=True) as c:
                    try:
                        if c.execute("SELECT COUNT(*) FROM samples").fetchone()[0] >= 8:
                            break
                    except sqlite3.OperationalError:  # the schema is still being made
                        pass
            assert proc.poll() is None, proc.communicate()
            tick.wait(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "soundatlas index: interrupted; run it again to go on" in err
    assert "Traceback" not in err, err
    s = index(lib)
    assert s.n_samples == 240 and s.n_unchanged >= 8 and s.n_failed == 0


def test_bad_corpus_each_file_indexed_or_recorded(tmp_path):
    from badfiles import make_bad_corpus

    lib = tmp_path / "lib"
    expect = make_bad_corpus(lib)
    make_tone_library(lib / "good", n_per_folder=3)
    s = index(lib, n_jobs=2, max_duration=30.0)
    failures = dict(s.failures)
    indexed = paths_in(lib / ".soundatlas")
    for rel in (lib / "good").rglob("*.wav"):
        assert f"good/{rel.relative_to(lib / 'good').as_posix()}" in indexed
    for rel, expectation in expect.items():
        if expectation == "ok":
            assert rel in indexed, (rel, failures.get(rel))
        elif expectation.startswith("fail:"):
            assert rel in failures, rel
            assert expectation[5:] in failures[rel].lower(), (rel, failures[rel])
            assert rel not in indexed
    assert s.n_failed == len(failures) > 0
    assert s.n_truncated >= 1  # the very long file: first 30 s only, and said so

    # failures of the bytes are kept from one run to the next; those that may pass are not
    db = sqlite3.connect(lib / ".soundatlas" / "atlas.sqlite")
    kept = dict(db.execute("SELECT path, decoded_with IS NOT NULL FROM failures"))
    db.close()
    content = ("empty", "corrupt", "not audio", "non-finite", "too short",
               "more than 1e+06 times full scale")
    access = ("does not exist", "symlink loop", "permission")
    lasting = {rel for rel, e in expect.items() if e.startswith("fail:") and e[5:] in content}
    passing = {rel for rel, e in expect.items() if e.startswith("fail:") and e[5:] in access}
    assert len(lasting) >= 8 and len(passing) >= 2
    assert {p for p, k in kept.items() if k} == lasting
    assert passing <= {p for p, k in kept.items() if not k}
    again = index(lib, n_jobs=2, max_duration=30.0)
    assert (again.n_failed_unchanged, again.failures) == (len(lasting), s.failures)


def test_symlink_loops_and_hidden_folders(tmp_path):
    lib = tmp_path / "lib"
    write_tone(lib / "a/one.wav", 440.0, seconds=0.3)
    write_tone(lib / ".hidden/two.wav", 440.0, seconds=0.3)
    write_tone(lib / "._junk.wav", 440.0, seconds=0.3)
    os.symlink("..", lib / "a/loop")  # a -> lib -> a -> ...
    os.symlink("self.wav", lib / "self.wav")
    s = index(lib)
    assert paths_in(lib / ".soundatlas") == {"a/one.wav"}
    assert dict(s.failures) == {"self.wav": "symlink loop"}


def test_a_link_to_a_folder_of_the_library_takes_nothing_from_it(tmp_path):
    """A link named to sort first ('Favs' -> 'kicks') moved every sample of the folder to the
    link's path, its folder label with it; links to folders outside the library, or hidden
    inside it, are still walked."""
    lib, elsewhere = tmp_path / "lib", tmp_path / "elsewhere"
    write_tone(lib / "kicks/k1.wav", 300.0, seconds=0.3)
    write_tone(lib / "kicks/k2.wav", 310.0, seconds=0.3)
    write_tone(lib / ".archive/old.wav", 320.0, seconds=0.3)
    write_tone(elsewhere / "pack.wav", 330.0, seconds=0.3)
    index(lib)
    with Atlas.open(lib / ".soundatlas") as a:
        before = {r.path: r.id for r in a.samples()}
    (lib / "Favs").symlink_to(lib / "kicks", target_is_directory=True)
    (lib / "Aold").symlink_to(lib / ".archive", target_is_directory=True)
    (lib / "Apack").symlink_to(elsewhere, target_is_directory=True)
    s = index(lib)
    assert (s.n_moved, s.n_removed, s.n_indexed) == (0, 0, 2)
    with Atlas.open(lib / ".soundatlas") as a:
        after = {r.path: r.id for r in a.samples()}
        assert after == {**before, "Aold/old.wav": after["Aold/old.wav"],
                         "Apack/pack.wav": after["Apack/pack.wav"]}
        assert set(a.labels("folder").values()) == {"kicks", "Aold", "Apack"}


def test_folders_nested_deeper_than_pythons_recursion_limit_are_scanned(tmp_path):
    lib = tmp_path / "lib"
    write_tone(lib / "top.wav", 440.0, seconds=0.3)
    fd = os.open(lib, os.O_RDONLY)  # one level at a time: pathlib's mkdir recurses too
    for _ in range(sys.getrecursionlimit() + 100):
        os.mkdir("d", dir_fd=fd)
        fd, up = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(up)
    with os.fdopen(os.open("bottom.wav", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
        os.close(fd)
        sf.write(f, np.zeros(4800, np.float32) + 0.1, 16000, format="WAV")
    from soundatlas.scan import ScanList

    try:
        with ScanList(lib) as found:
            assert found.n_files == 2 and found.n_problems == 0
            (deepest,) = [e.path for chunk in found.files(10) for e in chunk
                          if e.path != "top.wav"]
        assert deepest == "d/" * (sys.getrecursionlimit() + 100) + "bottom.wav"
        s = index(lib)  # the whole run: libsndfile cannot open a path that long, and says so
        assert s.n_indexed == 1 and [p for p, _ in s.failures] == [deepest]
    finally:
        # shutil.rmtree (and so pytest's clean-up of old temporary folders) recurses too
        subprocess.run(["rm", "-rf", str(lib / "d")], check=True)


def test_a_folder_whose_name_is_not_utf8_is_named_as_a_folder_not_scanned(tmp_path):
    lib = tmp_path / "lib"
    write_tone(lib / "ok.wav", 440.0, seconds=0.3)
    odd = os.fsencode(lib) + b"/Gr\xfc\xdfe"
    os.mkdir(odd)
    with open(odd + b"/in.wav", "wb") as f:
        sf.write(f, np.zeros(4800, np.float32) + 0.1, 16000, format="WAV")
    s = index(lib)
    ((path, reason),) = s.failures
    assert reason == "folder name is not valid UTF-8: its files were not scanned", reason
    assert s.n_indexed == 1


def test_cqt_parameters_of_an_atlas_cannot_change(tone_library):
    from soundatlas.cqt import CQTParams

    index(tone_library)
    with pytest.raises(AtlasError, match="other CQT parameters"):
        index(tone_library, params=CQTParams(hop_length=400))


def test_bad_arguments_are_named(tmp_path, tone_library):
    with pytest.raises(ParameterError, match="not a folder"):
        index(tmp_path / "missing")
    with pytest.raises(ParameterError, match="name-pattern"):
        index(tone_library, label_sources=LabelSources(name_pattern="(unclosed"))
    with pytest.raises(ParameterError, match="does not exist"):
        index(tone_library, label_sources=LabelSources(manifest="nope.csv"))
    with pytest.raises(ParameterError, match="is a directory, not a CSV file"):
        index(tone_library, label_sources=LabelSources(manifest=str(tmp_path)))
    with pytest.raises(AtlasError, match="no atlas"):
        Atlas.open(tmp_path / "nothing")


def test_newer_schema_is_refused(tone_library):
    index(tone_library)
    with sqlite3.connect(tone_library / ".soundatlas/atlas.sqlite") as c:
        c.execute("PRAGMA user_version = 99")
    with pytest.raises(AtlasError, match="newer"):
        Atlas.open(tone_library / ".soundatlas")


def test_rendered_demo_subset_indexes_with_its_manifest(rendered_library):
    s = index(rendered_library, n_jobs=1)
    assert s.n_failed == 0 and s.n_samples == len(list(rendered_library.rglob("*.wav")))
    with Atlas.open(rendered_library / ".soundatlas") as a:
        summary = a.label_summary()
    assert set(summary["instrument"]) == {"flute", "trombone", "violin"}
    assert set(summary["articulation"]) == {"short", "long"}
    assert sum(summary["pitch"].values()) == s.n_samples


def _segment_files(lib: Path) -> set[str]:
    return {p.name for p in (lib / ".soundatlas/features").iterdir()}


def _many_empty_files(lib: Path, n: int) -> None:
    """``n`` empty .wav files in folders of 100 (a scan reads no audio), with a text file and a
    broken link beside them."""
    for i in range(n):
        folder = lib / f"f{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{i:05d}.wav").touch()
    (lib / "f000" / "notes.txt").touch()
    os.symlink("gone.wav", lib / "f001" / "broken.wav")


def test_scan_list_is_the_sorted_scan_and_holds_nothing_per_file(tmp_path):
    import tracemalloc

    from soundatlas.scan import ScanList, scan

    def peak_of_scan_list(lib):
        tracemalloc.start()
        try:
            with ScanList(lib) as found:
                n = sum(len(chunk) for chunk in found.files(500))
                found.add_todo(next(found.files(10)))
            return n, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = tmp_path / "small", tmp_path / "large"
    _many_empty_files(small, 500)
    _many_empty_files(large, 5000)
    whole = scan(large)
    with ScanList(large) as found:
        assert [e for chunk in found.files(700) for e in chunk] == whole.files
        assert [p for chunk in found.problems(1) for p in chunk] == whole.problems
        assert found.problems and (found.n_files, found.n_ignored) == (5000, 1)
        found.add_todo(whole.files[7:12])
        found.add_todo(whole.files[:2])
        assert [e for chunk in found.todo(3) for e in chunk] == whole.files[7:12] + whole.files[:2]
        assert found.present(["f000/s00000.wav", "f001/broken.wav", "nowhere.wav"]) == {
            "f000/s00000.wav", "f001/broken.wav"}
    n_small, peak_small = peak_of_scan_list(small)
    n_large, peak_large = peak_of_scan_list(large)
    assert (n_small, n_large) == (500, 5000)
    # the list lives on disk: 4,500 more files may not cost 100 bytes each in Python objects
    # (a list of FileEntry costs about 250); one chunk and one folder's entries are held
    assert peak_large - peak_small < 4500 * 100, (peak_small, peak_large)


def test_index_of_many_files_labels_them_from_a_streamed_manifest(tmp_path):
    lib = tmp_path / "lib"
    for i in range(12):
        write_tone(lib / f"d{i % 3}/t{i:02d}.wav", 220.0 * (1 + i % 4), seconds=0.2)
    rows = ["path,instrument,pitch"] + [f"d{i % 3}/t{i:02d}.wav,i{i},{40 + i}" for i in range(12)]
    rows += ["d0/t00.wav,again,C4", "missing.wav,x,", "../outside.wav,y,"]  # later rows win
    (lib / "metadata.csv").write_text("\n".join(rows) + "\n")
    s = index(lib, batch_size=5)
    assert s.n_indexed == 12
    with Atlas.open(lib / ".soundatlas") as a:
        labels = {r.path: a.sample_labels(r.id) for r in a.samples()}
    assert labels["d0/t00.wav"] == {"folder": "d0", "instrument": "again", "pitch": "60"}
    assert labels["d2/t11.wav"] == {"folder": "d2", "instrument": "i11", "pitch": "51"}
    assert any(f"'../outside.wav' is outside the library {lib.resolve()} (a relative path is "
               f"read from the manifest's folder, {lib.resolve()})" in p for p in s.label_problems)
    assert "1 manifest rows name no indexed sample (missing or failed files)" in s.label_problems


@pytest.mark.parametrize("manifest", [True, False])
def test_a_run_that_adds_or_moves_files_labels_those_alone_as_a_full_labelling_would(
        tmp_path, manifest):
    """With the same sources (and manifest), a run labels only the samples it adds or moves:
    the others keep the rows they have (a row changed by hand here shows it), and every label,
    and the manifest's count of unmatched rows, is what labelling all of them gives."""
    lib = tmp_path / "lib"
    for i in range(9):
        write_tone(lib / f"d{i % 3}/t{i:02d}.wav", 220.0 * (1 + i % 4), seconds=0.2)
    if manifest:
        rows = ["path,instrument"] + [f"d{i % 3}/t{i:02d}.wav,i{i}" for i in range(9)]
        rows += ["d1/new.wav,fresh", "d0/renamed.wav,moved"]  # neither there yet
        (lib / "metadata.csv").write_text("\n".join(rows) + "\n")
    first = index(lib)
    assert manifest == ("2 manifest rows name no indexed sample (missing or failed files)" in (
        first.label_problems))
    atlas_dir = lib / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as a:  # a mark on a sample this run leaves alone
        kept_id = a.lookup_paths(["d0/t03.wav"])["d0/t03.wav"][0]
        a.conn.execute("UPDATE labels SET value = 'marked' WHERE sample_id = ? AND key = "
                       "'folder'", (kept_id,))
        a.conn.commit()
    write_tone(lib / "d1/new.wav", 330.0, seconds=0.2)
    shutil.move(lib / "d2/t02.wav", lib / "d0/renamed.wav")
    s = index(lib)
    assert (s.n_indexed, s.n_moved) == (1, 1)
    # the two rows found, and the moved file's old path named by none
    assert manifest == ("1 manifest rows name no indexed sample (missing or failed files)" in (
        s.label_problems))
    with Atlas.open(atlas_dir) as a:
        labels = {r.path: a.sample_labels(r.id) for r in a.samples()}
    assert labels["d1/new.wav"] == {"folder": "d1", **({"instrument": "fresh"} if manifest
                                                       else {})}
    assert labels["d0/renamed.wav"] == {"folder": "d0", **({"instrument": "moved"} if manifest
                                                           else {})}
    assert labels.pop("d0/t03.wav")["folder"] == "marked"  # not written again
    whole = tmp_path / "whole"  # every sample labelled by a first run
    index(lib, atlas=whole)
    with Atlas.open(whole) as a:
        expected = {r.path: a.sample_labels(r.id) for r in a.samples()}
    del expected["d0/t03.wav"]
    assert labels == expected


def test_an_atlas_follows_its_library_moved_and_refuses_another_library(tmp_path, capsys):
    """A library moved with its atlas inside, or copied with it or apart from it, is indexed
    where it is now, every sample kept, and the atlas records the new folder (the page plays
    from it). A folder that holds few of the atlas's files (another library, or a folder above
    the library) is refused before anything changes: its run would take the samples out."""
    from soundatlas.cli.library import print_index_summary

    lib = tmp_path / "lib"
    for i in range(3):
        write_tone(lib / f"d/t{i}.wav", 220.0 * (i + 1), seconds=0.2)
    index(lib)
    moved = tmp_path / "moved"
    shutil.move(lib, moved)
    s = index(moved)
    assert (s.n_unchanged, s.n_indexed, s.n_removed) == (3, 0, 0)
    assert s.library_moved_from == str(lib.resolve())
    print_index_summary(s)
    assert f"the library moved: the atlas indexed {lib.resolve()}, now {moved}" in (
        capsys.readouterr().out)
    with Atlas.open(moved / ".soundatlas") as a:
        assert a.library == moved.resolve()
    link = tmp_path / "link"  # a path recorded through a link is the same folder: no move
    link.symlink_to(moved)
    with Atlas.open(moved / ".soundatlas", write=True) as a:
        a.set_meta("library", str(link))
    assert index(moved).library_moved_from is None
    copy = tmp_path / "copy"  # the library copied with its atlas: the copy's atlas is its own
    shutil.copytree(moved, copy)
    assert index(copy).n_unchanged == 3
    with Atlas.open(copy / ".soundatlas") as a, Atlas.open(moved / ".soundatlas") as b:
        assert (a.library, b.library) == (copy.resolve(), moved.resolve())
    apart = tmp_path / "apart"  # the library and an atlas kept outside it, copied apart
    shutil.copytree(moved, apart / "lib", ignore=shutil.ignore_patterns(".soundatlas"))
    shutil.copytree(moved / ".soundatlas", apart / "atlas")
    assert index(apart / "lib", atlas=apart / "atlas").n_unchanged == 3
    with Atlas.open(apart / "atlas") as a:
        assert a.library == (apart / "lib").resolve()
    other = tmp_path / "other"
    write_tone(other / "x.wav", 500.0, seconds=0.2)
    for wrong in (other, tmp_path):  # another library; the folder above the library
        with pytest.raises(ParameterError, match=rf"the atlas at .* indexes the library "
                           rf"{moved.resolve()}, and {wrong.resolve()} holds 0 of 2 of its "
                           "files looked for.*--library-moved"):
            index(wrong, atlas=moved / ".soundatlas")
    assert paths_in(moved / ".soundatlas") == {f"d/t{i}.wav" for i in range(3)}
    with Atlas.open(moved / ".soundatlas") as a:
        assert a.library == moved.resolve()
    # ids with gaps (samples removed) are looked for all the same; half of them is enough
    for i in range(3, 8):
        write_tone(moved / f"d/t{i}.wav", 220.0 * (i + 1), seconds=0.2)
    index(moved)
    for i in (0, 2, 4, 6):
        (moved / f"d/t{i}.wav").unlink()
    index(moved)  # ids 1, 3, 5, 7 gone: 4 samples left, ids 2, 4, 6, 8
    half = tmp_path / "half"
    shutil.copytree(moved, half, ignore=shutil.ignore_patterns(".soundatlas", "t1.wav",
                                                                "t3.wav", "t5.wav"))
    shutil.copytree(moved / ".soundatlas", tmp_path / "half-atlas")
    with pytest.raises(ParameterError, match="holds 0 of 3 of its files looked for"):
        index(half, atlas=tmp_path / "half-atlas")  # 1 of 4 there: refused
    shutil.copytree(tmp_path / "half-atlas", tmp_path / "told-atlas")
    told = index(half, atlas=tmp_path / "told-atlas", library_moved=True)  # the user says so
    assert told.library_moved_from and told.n_removed == 3
    (half / "d/t5.wav").write_bytes((moved / "d/t5.wav").read_bytes())
    assert index(half, atlas=tmp_path / "half-atlas").library_moved_from  # 2 of 4: followed
    # a library moved with most of its files gone: followed when the user says so
    gone = tmp_path / "gone"
    shutil.copytree(moved, gone, ignore=shutil.ignore_patterns("t1.wav", "t3.wav", "t5.wav"))
    shutil.rmtree(moved)
    s = index(gone, atlas=gone / ".soundatlas")  # its atlas inside: followed
    assert s.library_moved_from == str(moved.resolve()) and s.n_removed == 3


def test_a_manifest_edited_to_the_same_size_and_time_is_read_again(tmp_path):
    """An edit that keeps the manifest's size and sets its modification time back (as
    ``rsync -t`` or ``touch -r`` do) still changes the labels of the next run."""
    lib = tmp_path / "lib"
    for i in range(3):
        write_tone(lib / f"t{i}.wav", 220.0 * (i + 1), seconds=0.2)
    manifest = lib / "metadata.csv"
    manifest.write_text("path,instrument\nt0.wav,kick\nt1.wav,snare\nt2.wav,hihat\n")
    index(lib)
    st = manifest.stat()
    manifest.write_text("path,instrument\nt0.wav,kick\nt1.wav,clap!\nt2.wav,hihat\n")
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = manifest.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    s = index(lib)
    assert s.n_unchanged == 3
    with Atlas.open(lib / ".soundatlas") as a:
        labels = {r.path: a.sample_labels(r.id).get("instrument") for r in a.samples()}
    assert labels == {"t0.wav": "kick", "t1.wav": "clap!", "t2.wav": "hihat"}


def test_files_an_interrupted_run_added_are_labelled_by_the_next_run(tmp_path):
    """A run stopped after committing a new file, before it wrote labels: the next run, which
    finds that file unchanged, labels it too."""
    lib = tmp_path / "lib"
    write_tone(lib / "a/one.wav", 220.0, seconds=0.2)
    index(lib)
    write_tone(lib / "b/two.wav", 330.0, seconds=0.2)
    write_tone(lib / "c/three.wav", 440.0, seconds=0.2)

    def stop(done, total):
        if done > 1:  # one.wav unchanged, then a batch of one new file committed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index(lib, batch_size=1, progress=stop)
    s = index(lib)
    assert s.n_indexed == 1
    with Atlas.open(lib / ".soundatlas") as a:
        labels = {r.path: a.sample_labels(r.id) for r in a.samples()}
    assert labels == {"a/one.wav": {"folder": "a"}, "b/two.wav": {"folder": "b"},
                      "c/three.wav": {"folder": "c"}}


@pytest.mark.parametrize("relpath", ["a.wav", "d/a.wav", "d/e/a.b.wav", "d/.hidden", "d/x.", "x",
                                     "d/e/..wav", "d/e/a..wav", "ü/ß.flac", "d/C#4 take.aif"])
def test_labels_from_paths_read_them_as_pathlib_does(relpath):
    # string operations, because pathlib interns every part it parses (a million file names kept)
    from pathlib import PurePosixPath

    from soundatlas.labels import compile_name_pattern, folder_labels, name_labels

    p = PurePosixPath(relpath)
    assert folder_labels(relpath) == ({"folder": p.parent.name} if p.parent.name else {})
    stem = compile_name_pattern(r"^(?P<stem>.*)$")
    assert name_labels(relpath, stem) == ({"stem": p.stem} if p.stem else {})


@pytest.mark.parametrize("base", ["/lib", "/lib/sub", "/elsewhere"])
@pytest.mark.parametrize("path", ["a.wav", "./a.wav", "../a.wav", "../lib/a.wav", "/lib/a/b.wav",
                                  "/libx/a.wav", "a//b.wav", "sub/../../lib/c.wav", "/etc/x.wav"])
def test_manifest_paths_are_made_relative_as_pathlib_does(path, base):
    import os
    from pathlib import Path, PurePosixPath

    from soundatlas.labels import _relative

    full = Path(path) if Path(path).is_absolute() else Path(base) / path
    try:
        expected = PurePosixPath(Path(os.path.normpath(full)).relative_to("/lib")).as_posix()
    except ValueError:
        expected = None
    assert _relative(path, Path(base), Path("/lib")) == expected


def _searched(atlas_dir, needle: str) -> set[str]:
    with Atlas.open(atlas_dir) as a:
        assert a._has_path_trigrams()  # schema 5 on an SQLite with FTS5's trigram tokenizer
        return set(a.paths(a.find_samples(path_contains=needle).tolist()).values())


def test_search_by_path_follows_moves_changes_and_deletions_through_its_index(tone_library):
    # the trigram index of the paths is kept by triggers: every index run's writes show at once
    index(tone_library)
    atlas_dir = tone_library / ".soundatlas"
    assert _searched(atlas_dir, "LOW_03") == {f"low/low_{m:03d}.wav" for m in range(36, 40)}
    (tone_library / "Éclats").mkdir()
    shutil.move(tone_library / "low/low_037.wav", tone_library / "Éclats/Straße_037.wav")
    shutil.rmtree(tone_library / "high")
    write_tone(tone_library / "mid/mid_060.wav", 300.0, seconds=0.4)  # changed in place
    s = index(tone_library)
    assert (s.n_moved, s.n_removed, s.n_indexed) == (1, 6, 1)
    assert _searched(atlas_dir, "low_037") == set()
    assert _searched(atlas_dir, "STRASSE") == {"Éclats/Straße_037.wav"}  # not ASCII: casefold
    assert _searched(atlas_dir, "_037") == {"Éclats/Straße_037.wav"}
    # case ignored, in either Unicode form (macOS writes names decomposed)
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Café")
    shutil.move(tone_library / "mid/mid_061.wav", tone_library / f"mid/{nfd}_061.wav")
    index(tone_library)
    for needle in ("café_061", unicodedata.normalize("NFC", "CAFÉ_061"), nfd):
        assert _searched(atlas_dir, needle) == {f"mid/{nfd}_061.wav"}, needle
    assert _searched(atlas_dir, "ÉCLATS") == {"Éclats/Straße_037.wav"}
    assert _searched(atlas_dir, "high") == set()
    assert _searched(atlas_dir, "mid_060") == {"mid/mid_060.wav"}
    with Atlas.open(atlas_dir) as a:  # the index holds exactly the atlas's paths
        n = a.conn.execute("SELECT COUNT(*) FROM path_trigrams WHERE path_trigrams MATCH 'wav'"
                           ).fetchone()[0]
        assert n == a.n_samples() == 12


def test_an_atlas_before_the_path_index_is_searched_by_scanning_then_migrated(tone_library):
    index(tone_library)
    atlas_dir = tone_library / ".soundatlas"
    downgrade_schema(atlas_dir, 4)  # the schema before the index
    with Atlas.open(atlas_dir) as a:  # read-only: scanned
        assert a.schema_version == 4 and not a._has_path_trigrams()
        assert set(a.paths(a.find_samples(path_contains="MID_06").tolist()).values()) == {
            f"mid/mid_{m:03d}.wav" for m in range(60, 66)}
    with Atlas.open(atlas_dir, write=True) as a:  # migrated: the index built from the paths
        assert a.schema_version == SCHEMA_VERSION
    assert _searched(atlas_dir, "MID_06") == {f"mid/mid_{m:03d}.wav" for m in range(60, 66)}


def test_without_the_trigram_tokenizer_an_atlas_is_made_and_searched_by_scanning(tone_library,
                                                                                  monkeypatch):
    from soundatlas.atlas import schema

    monkeypatch.setattr(schema, "trigram_search_available", lambda: False)  # SQLite < 3.34
    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas") as a:
        assert a.schema_version == SCHEMA_VERSION and not a._has_path_trigrams()
        assert a.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'path_trigrams'"
                              ).fetchone() is None
        assert set(a.paths(a.find_samples(path_contains="LOW_03").tolist()).values()) == {
            f"low/low_{m:03d}.wav" for m in range(36, 40)}


def test_files_that_change_or_vanish_between_scan_and_analysis(tmp_path):
    """While `index` runs (its progress callback, after the first batch), one file not yet
    analysed is deleted and another rewritten: the run ends, the deleted file is a failure
    naming why, the rewritten one is analysed as it is now or again by the next run, and the
    next run leaves an atlas that matches the library."""
    lib = tmp_path / "lib"
    for i in range(24):
        write_tone(lib / f"t{i:02d}.wav", 200.0 + 10 * i, seconds=0.5, sr=16000)
    state = {"done": False}

    def meddle(done, total):
        if done >= 4 and not state["done"]:
            state["done"] = True
            (lib / "t20.wav").unlink()
            write_tone(lib / "t21.wav", 999.0, seconds=0.8, sr=16000)

    s = index_library(lib, n_jobs=1, batch_size=4, progress=meddle)
    assert state["done"] and s.n_scanned == 24
    assert s.failures == [("t20.wav", "file does not exist")]
    again = index_library(lib, n_jobs=1)
    with Atlas.open(lib / ".soundatlas") as atlas:
        paths = {r.path: r for r in atlas.samples()}
        assert set(paths) == {f"t{i:02d}.wav" for i in range(24) if i != 20}
        assert atlas.failures() == []  # the deleted file's failure is forgotten
        assert abs(paths["t21.wav"].duration - 0.8) < 0.05  # as the file is now
    assert again.n_failed == 0


def test_atlas_queries_by_id_take_numpy_ids(indexed_for_default):
    # sqlite3 binds a NumPy integer as a BLOB, which matches no row: the lookups would come back
    # empty, not wrong-typed, if the ids were not made Python ints
    with Atlas.open(indexed_for_default) as atlas:
        ids = atlas.sample_ids()
        assert ids.dtype.kind == "i" and len(ids)
        paths = atlas.paths(ids)
        assert paths == atlas.paths(ids.tolist()) and len(paths) == len(ids)
        assert atlas.paths(ids.astype(np.int32)[:3]) == {int(i): paths[int(i)] for i in ids[:3]}


def test_an_atlas_whose_creation_stopped_half_way_is_made_again_with_the_cqt_asked(tmp_path):
    """A first run that stopped after the database file appeared but before the atlas recorded
    its CQT (a full disk, a kill) leaves no atlas: the next run makes it with the CQT asked for
    (or the model's), not the kernel parameters stored without one mean."""
    from conftest import make_tone_library
    from soundatlas.artifact import DEFAULT_MODEL, SHIPPED_MODELS, ModelArtifact
    from soundatlas.atlas import Atlas
    from soundatlas.atlas.schema import DB_NAME, connect, migrate
    from soundatlas.cqt_params import PAPER_CQT, CQTParams
    from soundatlas.indexing import cqt_for_model, index_library

    lib = make_tone_library(tmp_path / "lib", n_per_folder=1)
    for kernel_asked, atlas_dir in ((None, tmp_path / "a"), (CQTParams(), tmp_path / "b")):
        atlas_dir.mkdir()
        conn = connect(atlas_dir / DB_NAME, write=True)  # tables made, nothing recorded yet
        migrate(conn, atlas_dir, write=True)
        conn.close()
        assert not Atlas.exists(atlas_dir)
        shipped = ModelArtifact.load(SHIPPED_MODELS / DEFAULT_MODEL)
        assert cqt_for_model(lib, atlas_dir, None) == shipped.cqt
        summary = index_library(lib, atlas_dir=atlas_dir, params=kernel_asked, n_jobs=1)
        assert summary.n_indexed == 3
        assert Atlas.exists(atlas_dir)
        with Atlas.open(atlas_dir) as atlas:
            assert atlas.cqt_params == (kernel_asked or PAPER_CQT)
        assert cqt_for_model(lib, atlas_dir, None) is None  # now an atlas: it keeps its own
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / DB_NAME).write_bytes(b"not a database at all")
    assert Atlas.exists(tmp_path / "c")  # opening it says what is wrong; nothing is remade


def test_a_model_registered_again_is_read_with_its_new_config(tmp_path):
    """Model configs are parsed once per open atlas; registering a model again (by this open or
    another process's) must still be seen, as the server's long-lived reader sees it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    with Atlas.create(lib / ".soundatlas", library=lib) as writer, \
            Atlas.open(lib / ".soundatlas") as reader:
        writer.register_model("m", "m", {"version": 1})
        assert reader.model("m").config == {"version": 1}
        assert reader.model("m") == writer.model("m")
        writer.register_model("m", "m", {"version": 2, "big": list(range(1000))})
        assert reader.model("m").config["version"] == 2
        assert writer.model("m").config["version"] == 2
        writer.register_model("other", "o", {"version": 3})
        assert [(m.name, m.config["version"]) for m in reader.models()] == [("m", 2),
                                                                           ("other", 3)]
        writer.remove_model("m")
        with pytest.raises(AtlasError, match="known: other"):
            reader.model("m")


def test_a_label_option_changes_only_what_it_names(tone_library):
    """`--name-pattern` or `--no-folder-labels` alone keep the manifest (the library's
    metadata.csv, or the one stored); `--labels` alone keeps a stored pattern."""
    from soundatlas.cli import main

    atlas = tone_library / ".soundatlas"
    pattern = r"(?P<stem>[a-z]+)_\d+"
    assert main(["index", str(tone_library), "--name-pattern", pattern, "--jobs", "1", "-q"]) == 0
    with Atlas.open(atlas) as a:
        assert {"instrument", "pitch", "folder", "stem"} <= set(a.label_keys())
    assert main(["index", str(tone_library), "--no-folder-labels", "--jobs", "1", "-q"]) == 0
    with Atlas.open(atlas) as a:
        keys = set(a.label_keys())
        stored = a.meta("label_sources")
    assert {"instrument", "pitch", "stem"} <= keys and "folder" not in keys
    assert '"folder": false' in stored and '"name_pattern": "(?P<stem>' in stored
    other = tone_library / "other.csv"
    other.write_text("path,mood\nlow/low_036.wav,dark\n")
    assert main(["index", str(tone_library), "--labels", str(other), "--jobs", "1", "-q"]) == 0
    with Atlas.open(atlas) as a:
        keys = set(a.label_keys())
    assert {"mood", "stem"} <= keys and "instrument" not in keys  # the new manifest replaces it


def test_wrong_label_options_change_nothing(tone_library):
    """A manifest that is not there or a pattern that does not compile is refused before an
    atlas is made, and before an existing one starts recomputing its features."""
    from soundatlas.cqt_params import PAPER_CQT
    from dataclasses import replace

    atlas = tone_library / ".soundatlas"
    for bad in ({"manifest": "nope.csv"}, {"name_pattern": "(?P<x"}):
        with pytest.raises(ParameterError):
            index(tone_library, label_sources=bad)
        assert not atlas.exists()
    index(tone_library, params=replace(PAPER_CQT, kernel="folded"))
    with pytest.raises(ParameterError, match="nope.csv does not exist"):
        index(tone_library, label_sources={"manifest": "nope.csv"}, refresh_features=True)
    with Atlas.open(atlas) as a:
        assert a.feature_refresh_started() is None and a.cqt_params.kernel == "folded"


def test_a_run_with_nothing_to_do_records_every_file_dealt_with(tone_library):
    index(tone_library)
    index(tone_library)  # every file unchanged: no batch is committed
    with Atlas.open(tone_library / ".soundatlas") as a:
        run = a.last_run("index")
    assert run["status"] == "done" and run["n_done"] == run["n_total"] == 18


def test_a_file_moved_after_check_repair_marked_it_is_analysed_not_taken_as_moved(tone_library):
    """check --repair marks the samples of a damaged feature file for the next index; a file
    of them renamed meanwhile gets new features, not the damaged ones under its new name."""
    from soundatlas.check import check_atlas

    index(tone_library, batch_size=6)
    atlas_dir = tone_library / ".soundatlas"
    with Atlas.open(atlas_dir) as a:
        rec = next(r for r in a.samples() if r.path == "low/low_036.wav")
        file = a.conn.execute("SELECT file FROM segments WHERE id = ?",
                              (rec.segment,)).fetchone()[0]
    seg = atlas_dir / "features" / file
    data = bytearray(seg.read_bytes())
    data[-2:] = b"\xff\x7b"  # the last value changed, the size kept: only the checksum sees it
    seg.write_bytes(bytes(data))
    assert check_atlas(atlas_dir, repair=True).checked["damaged_samples"] == 6  # marked
    (tone_library / "low/low_036.wav").rename(tone_library / "low/renamed.wav")
    s = index(tone_library, batch_size=6)
    assert s.n_moved == 0 and s.n_indexed >= 1
    assert check_atlas(atlas_dir).ok  # nothing damaged is left


def test_samples_behind_a_folder_that_cannot_be_read_are_kept(tmp_path):
    """A folder link whose drive is not there (the target renamed here) is a problem of the
    run, not a deletion: its samples keep their features and ids, and the run once it is back
    finds them unchanged."""
    lib, outside = tmp_path / "lib", tmp_path / "drive"
    for i in range(2):
        write_tone(lib / f"here/h{i}.wav", 300.0 + 50 * i, seconds=0.3)
        write_tone(outside / f"x{i}.wav", 500.0 + 50 * i, seconds=0.3)
    (lib / "ext").symlink_to(outside, target_is_directory=True)
    index(lib)
    with Atlas.open(lib / ".soundatlas") as a:
        before = {r.path: r.id for r in a.samples()}
    assert set(before) == {"here/h0.wav", "here/h1.wav", "ext/x0.wav", "ext/x1.wav"}
    outside.rename(tmp_path / "unmounted")
    s = index(lib)
    assert (s.n_removed, s.n_kept_unreadable, s.n_samples) == (0, 2, 4)
    assert [p for p, _ in s.failures] == ["ext"]
    with Atlas.open(lib / ".soundatlas") as a:
        assert {r.path: r.id for r in a.samples()} == before
    (tmp_path / "unmounted").rename(outside)
    s = index(lib)
    assert (s.n_unchanged, s.n_indexed, s.n_removed, s.n_failed) == (4, 0, 0, 0)
    # a file link whose target is away too: the sample stays (it was recorded as a failure
    # and deleted, though the summary counted it kept)
    (lib / "one.wav").symlink_to(outside / "x0.wav")
    index(lib)
    with Atlas.open(lib / ".soundatlas") as a:
        before = {r.path: r.id for r in a.samples()}
    outside.rename(tmp_path / "unmounted")
    s = index(lib)
    assert (s.n_removed, s.n_kept_unreadable, s.n_samples) == (0, 3, 5)
    assert sorted(p for p, _ in s.failures) == ["ext", "one.wav"]
    with Atlas.open(lib / ".soundatlas") as a:
        assert {r.path: r.id for r in a.samples()} == before
    (tmp_path / "unmounted").rename(outside)
    s = index(lib)
    assert (s.n_unchanged, s.n_indexed, s.n_removed, s.n_failed) == (5, 0, 0, 0)


def test_a_library_that_cannot_be_listed_is_one_line_not_a_traceback(tone_library):
    from conftest import where_modes_bind

    prefix = where_modes_bind()
    tone_library.chmod(0o111)  # can be entered, not listed (by its owner either)
    try:
        out = subprocess.run([*prefix, str(Path(sys.executable).parent / "soundatlas"), "index",
                              str(tone_library), "--atlas", str(tone_library.parent / "atlas"),
                              "-q"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CI": "1"})
    finally:
        tone_library.chmod(0o755)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (f"soundatlas index: error: library {tone_library} cannot be "
                                  "read: permission denied")


def _index_unable_to_read(prefix: list[str], lib: Path, locked: Path):
    """`soundatlas index --json` of ``lib`` by a process that may not read ``locked`` (mode
    000, run under ``prefix``, :func:`conftest.where_modes_bind`): (its summary, the run)."""
    locked.chmod(0o000)
    try:
        out = subprocess.run([*prefix, str(Path(sys.executable).parent / "soundatlas"), "index",
                              str(lib), "--jobs", "1", "--json"],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CI": "1"})
    finally:
        locked.chmod(0o644)
    return json.loads(out.stdout), out


def test_a_changed_file_that_cannot_be_read_now_keeps_its_sample_until_it_can(tone_library):
    """A file whose date changed, read by a process that may not read it (a permission, an I/O
    error, Dask workers that see the library elsewhere): its sample was deleted with its
    points and split, though the failure may pass. It stays, the failure is listed, and once
    the file can be read it is kept as it was (the same content)."""
    from conftest import where_modes_bind

    prefix = where_modes_bind()
    atlas = tone_library / ".soundatlas"
    index(tone_library)
    with Atlas.open(atlas) as a:
        before = {r.path: r.id for r in a.samples()}
    target = tone_library / "mid" / "mid_060.wav"
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    summary, out = _index_unable_to_read(prefix, tone_library, target)
    assert (summary["n_kept_unreadable"], summary["n_removed"], summary["n_indexed"]) == (1, 0, 0)
    assert [p for p, _ in summary["failures"]] == ["mid/mid_060.wav"], out.stdout
    with Atlas.open(atlas) as a:
        assert {r.path: r.id for r in a.samples()} == before
        assert a.failure("mid/mid_060.wav") is not None  # still listed after the run
    s = index(tone_library)
    assert (s.n_touched, s.n_failed, s.n_kept_unreadable) == (1, 0, 0)
    with Atlas.open(atlas) as a:
        assert {r.path: r.id for r in a.samples()} == before and a.failures() == []


def test_moved_files_whose_workers_cannot_see_the_library_keep_the_samples_they_may_be(
        tone_library):
    """Workers that see the library elsewhere (a cluster whose machines mount it under another
    path) fail every file; the samples of files moved meanwhile were deleted at the end of the
    run, with their points and splits. They stay until a run reads the files, and are then
    found as moved."""
    import functools
    from concurrent.futures import ThreadPoolExecutor

    class Elsewhere(ThreadPoolExecutor):  # workers on a machine without the library there
        def submit(self, fn, *args, **kwargs):
            if isinstance(fn, functools.partial) and "root" in fn.keywords:
                fn = functools.partial(fn.func, *fn.args,
                                       **{**fn.keywords, "root": str(tone_library) + "-x"})
            return super().submit(fn, *args, **kwargs)

    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas") as a:
        before = {r.path: r.id for r in a.samples()}
    (tone_library / "elsewhere").mkdir()
    (tone_library / "mid" / "mid_060.wav").rename(tone_library / "elsewhere" / "mid_060.wav")
    with Elsewhere(max_workers=1) as pool:
        s = index_library(tone_library, executor=pool)
    assert (s.n_removed, s.n_kept_unreadable, s.n_indexed) == (0, 1, 0)
    assert "cannot be read on" in dict(s.failures)["elsewhere/mid_060.wav"]
    with Atlas.open(tone_library / ".soundatlas") as a:
        assert {r.path: r.id for r in a.samples()} == before  # the old path, kept
    s = index(tone_library)
    assert (s.n_moved, s.n_removed, s.n_failed) == (1, 0, 0)
    with Atlas.open(tone_library / ".soundatlas") as a:
        after = {r.path: r.id for r in a.samples()}
    assert after["elsewhere/mid_060.wav"] == before["mid/mid_060.wav"]


def test_one_unreadable_new_file_does_not_keep_the_missing_samples_of_its_size(tone_library):
    """A file at a new path that this user may not read (a permission) could be a missing
    sample moved, or any other sound of that size: the missing samples go, as before, rather
    than linger as files no one can play while the unreadable one stays."""
    from conftest import where_modes_bind

    prefix = where_modes_bind()
    index(tone_library)
    moved = tone_library / "elsewhere" / "mid_060.wav"
    moved.parent.mkdir()
    (tone_library / "mid" / "mid_060.wav").rename(moved)
    summary, out = _index_unable_to_read(prefix, tone_library, moved)
    assert (summary["n_removed"], summary["n_kept_unreadable"]) == (1, 0), out.stdout
    assert [p for p, _ in summary["failures"]] == ["elsewhere/mid_060.wav"]


def test_a_worker_that_cannot_see_the_library_names_the_folder_and_its_machine(tone_library,
                                                                             tmp_path):
    """A Dask worker on a machine where the library is not at the path the client gave: each
    file failed as 'file does not exist', naming neither the folder nor the machine. The
    batch stage, run where the folder is missing, says both (a failure that may pass)."""
    import socket

    from soundatlas.atlas.records import FileEntry
    from soundatlas.cqt_params import PAPER_CQT
    from soundatlas.indexing import _analyse

    entries = [FileEntry("mid/mid_060.wav", 1, 1), FileEntry("low/low_036.wav", 1, 1)]
    elsewhere = str(tmp_path / "not-mounted")
    results = _analyse(entries, root=elsewhere, params=PAPER_CQT, max_duration=30.0)
    assert [type(r).__name__ for r in results] == ["AudioReadError"] * 2
    assert all(not r.lasting and elsewhere in r.reason and socket.gethostname() in r.reason
               for r in results)
    here = _analyse(entries[:1], root=str(tone_library), params=PAPER_CQT, max_duration=30.0)
    assert type(here[0]).__name__ != "AudioReadError"


def test_a_batch_carries_only_the_missing_hashes_of_its_files_sizes(tone_library, tmp_path):
    """Moved files are found by content, and each batch used to carry the hash of every
    missing sample (35 MB with a moved top folder of a million files, pickled for every
    batch). A batch now carries the hashes of missing samples of its files' sizes only, and
    every moved file is still found."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from conftest import write_tone

    write_tone(tone_library / "long" / "drone.wav", 110.0, seconds=3.0)
    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas") as a:
        records = list(a.samples())
    drone = next(r for r in records if r.path == "long/drone.wav")
    assert sum(r.size == drone.size for r in records) == 1  # a size no other file has
    moved = tone_library / "moved"
    moved.mkdir()
    for folder in ("low", "mid", "high", "long"):
        (tone_library / folder).rename(moved / folder)

    class Recording(ThreadPoolExecutor):
        sent: list[bytes] = []

        def submit(self, fn, *args, **kwargs):
            self.sent.append(pickle.dumps((fn, args)))
            return super().submit(fn, *args, **kwargs)

    with Recording(max_workers=1) as pool:
        s = index_library(tone_library, executor=pool, batch_size=4)
    assert (s.n_moved, s.n_indexed, s.n_removed) == (len(records), 0, 0)
    with_drone = [b for b in Recording.sent if b"long/drone.wav" in b]
    others = [b for b in Recording.sent if b"long/drone.wav" not in b]
    assert len(with_drone) == 1 and others
    assert drone.hash.encode() in with_drone[0]
    assert not any(drone.hash.encode() in b for b in others)
    # files of one size (a rendered or fixed-length library) share their size's hashes: a
    # batch carries them once, not once a file
    from soundatlas.atlas.records import FileEntry
    from soundatlas.indexing import _orphans, _with_twins

    with Atlas.open(tone_library / ".soundatlas") as atlas:
        _, _, twins = _orphans(atlas, bytearray(10_000), set())  # as if every file had gone
    size, hashes = max(twins.items(), key=lambda kv: len(kv[1]))
    assert len(hashes) >= 2
    batch = _with_twins([FileEntry(f"f{i}.wav", size, i) for i in range(32)], twins)
    assert all(e.twins is batch[0].twins for e in batch)  # one object: pickled once a batch
    assert set(batch[0].twins) == set(hashes)


def _stem(path, freq, *, sr=48000, seconds=20.0):
    """A 20 s stereo 24-bit stem sounding only between 7.6 and 12.4 s: over 4 MiB, and silent
    for more than its first and last 2 MiB (7.3 s), as long and as silent at both ends as any
    other stem made so."""
    t = np.arange(int(sr * seconds)) / sr
    y = np.where((t > 7.6) & (t < 12.4), 0.5 * np.sin(2 * np.pi * freq * t), 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    y = y.astype(np.float32)
    sf.write(path, np.stack([y, y], axis=1), sr, subtype="PCM_24")  # no PEAK chunk
    return path


def test_a_large_file_replacing_a_vanished_one_with_the_same_head_and_tail_is_analysed(tmp_path):
    """Two stems of one song, silent at both ends and as long, share their size, head and tail
    (what an older soundatlas hashed a file over 4 MiB by). One replacing the other is analysed,
    not given the other's features as a moved file; a stem that did move keeps its record."""
    from soundatlas.pipeline import content_hash, legacy_fingerprint

    lib = tmp_path / "lib"
    bass = _stem(lib / "stems/bass.wav", 80.0)
    drums = _stem(lib / "stems/drums.wav", 200.0)
    lead = _stem(tmp_path / "lead.wav", 1760.0)
    assert bass.stat().st_size > 4 << 20
    assert legacy_fingerprint(bass) == legacy_fingerprint(lead) != content_hash(lead)
    assert content_hash(bass) != content_hash(lead)
    index(lib)
    with Atlas.open(lib / ".soundatlas") as a:
        drums_before = {r.path: r for r in a.samples()}["stems/drums.wav"]
    bass.unlink()
    lead.rename(lib / "stems/lead.wav")
    drums.rename(lib / "drums.wav")
    s = index(lib)
    assert (s.n_moved, s.n_indexed, s.n_removed) == (1, 1, 1)
    with Atlas.open(lib / ".soundatlas") as a:
        recs = {r.path: r for r in a.samples()}
        assert set(recs) == {"stems/lead.wav", "drums.wav"}
        assert (recs["drums.wav"].id, recs["drums.wav"].segment) == (
            drums_before.id, drums_before.segment)
        F = a.features(recs["stems/lead.wav"])
    want = cqt(audio.load(lib / "stems/lead.wav", sr=16000).y)
    assert np.abs(F - want).max() < 0.05  # its own features


def test_long_files_an_older_soundatlas_fingerprinted_are_hashed_whole_keeping_curation(
        tmp_path):
    """Before atlas schema 9 a file over 4 MiB was hashed by its size, head and tail, and the
    user's tags, stars and collections are keyed by the hash. The first index after the upgrade
    hashes such files whole, keeping their records, and carries the curation over: to both of
    two stems that shared one fingerprint (which then stop sharing), to a stem whose date
    changed and to one that moved (both analysed again); the fingerprint's own rows go."""
    from soundatlas.pipeline import content_hash, legacy_fingerprint

    lib = tmp_path / "lib"
    stems = {name: _stem(lib / f"stems/{name}.wav", freq, seconds=seconds)
             for name, freq, seconds in [("bass", 80.0, 20.0), ("lead", 1760.0, 20.0),
                                         ("pad", 330.0, 21.0), ("keys", 523.0, 22.0)]}
    write_tone(lib / "click.wav", 1000.0, seconds=0.2)
    index(lib)
    atlas_dir = lib / ".soundatlas"
    old = {name: legacy_fingerprint(f) for name, f in stems.items()}
    assert old["bass"] == old["lead"] and len(set(old.values())) == 3
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:  # the hashes an older one took
        for name, f in stems.items():
            conn.execute("UPDATE samples SET hash = ? WHERE path = ?",
                         (old[name], f"stems/{name}.wav"))
    with Atlas.open(atlas_dir, write=True) as a:
        ids = {Path(r.path).stem: r.id for r in a.samples()}
        a.tag([ids["bass"]], add=["low end", "mood:dark"])  # tags the lead too: one hash
        a.tag([ids["pad"], ids["keys"]], add=["keep"])
        a.tag([ids["click"]], add=["short"])
        a.star([ids["keys"]])
        a.set_note(ids["pad"], "the warm one")
        a.add_to_collection("song", [ids["keys"], ids["lead"], ids["click"]], create=True)
        before = {r.path: r for r in a.samples()}
        assert len(a.collection_members("song")) == 3  # the bass and the lead: one item
    downgrade_schema(atlas_dir, 8)
    os.utime(stems["pad"], ns=(time.time_ns(), time.time_ns() + 10**9))
    stems["keys"].rename(lib / "keys.wav")

    s = index(lib)
    assert (s.n_rehashed, s.n_indexed, s.n_removed, s.n_moved) == (2, 2, 1, 0)
    with Atlas.open(atlas_dir) as a:
        recs = {r.path: r for r in a.samples()}
        ids = {Path(p).stem: r.id for p, r in recs.items()}
        for name in ("bass", "lead"):  # unchanged: the same record, its whole hash now
            rec = recs[f"stems/{name}.wav"]
            assert rec.id == before[f"stems/{name}.wav"].id
            assert rec.hash == content_hash(stems[name])
        assert recs["keys.wav"].hash == content_hash(lib / "keys.wav")
        assert recs["stems/pad.wav"].hash == content_hash(stems["pad"])
        cur = a.curation_of(ids.values())
        assert set(cur[ids["bass"]]["tags"]) == set(cur[ids["lead"]]["tags"]) == {
            "low end", "mood:dark"}
        assert cur[ids["pad"]]["tags"] == ["keep"] and cur[ids["pad"]]["note"] == "the warm one"
        assert cur[ids["keys"]]["tags"] == ["keep"] and cur[ids["keys"]]["starred"]
        assert cur[ids["click"]]["tags"] == ["short"]
        members = [sid for sid, _path in a.collection_members("song")]
        assert members[0] == ids["keys"] and members[3] == ids["click"]
        assert sorted(members[1:3]) == sorted([ids["bass"], ids["lead"]])  # two, where one was
        assert a.missing_items() == [] and a.legacy_holders() == []
        left = {h for (h,) in a.conn.execute(
            "SELECT hash FROM user_labels UNION SELECT hash FROM user_items"
            " UNION SELECT hash FROM collection_items")}
        assert not left & set(old.values())
    with Atlas.open(atlas_dir, write=True) as a:  # the two stems no longer share their tags
        a.tag([ids["bass"]], remove=["low end"])
        cur = a.curation_of([ids["bass"], ids["lead"]])
        assert "low end" in cur[ids["lead"]]["tags"] and "low end" not in cur[ids["bass"]]["tags"]
    again = index(lib)
    assert (again.n_rehashed, again.n_indexed, again.n_unchanged) == (0, 0, 5)


def test_an_older_fingerprint_goes_to_the_files_that_had_it_and_to_no_other(tmp_path):
    """The holders of an old hash are each file that had it: a new file that only shares the
    fingerprint of a stem still in place takes nothing; a stem away during the upgrade, and a
    file already missing before it, take their curation when they come back; a copy goes to
    its file's split; a tags CSV written before the upgrade still finds its files."""
    from soundatlas.pipeline import legacy_fingerprint

    lib, away = tmp_path / "lib", tmp_path / "away"
    bass = _stem(lib / "song/bass.wav", 80.0)
    lead = _stem(lib / "song/lead.wav", 1760.0)  # the bass's size, head and tail
    pad = _stem(lib / "drive/pad.wav", 330.0, seconds=21.0)
    write_tone(lib / "click.wav", 1000.0, seconds=0.2)
    index(lib)
    atlas_dir = lib / ".soundatlas"
    old = {f.name: legacy_fingerprint(f) for f in (bass, lead, pad)}
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:
        for f in (bass, lead, pad):
            conn.execute("UPDATE samples SET hash = ? WHERE path = ?",
                         (old[f.name], f.relative_to(lib).as_posix()))
    with Atlas.open(atlas_dir, write=True) as a:
        ids = {Path(r.path).stem: r.id for r in a.samples()}
        a.tag([ids["bass"]], add=["low"])  # the lead too: one hash
        a.tag([ids["pad"]], add=["warm"])
        csv_rows = a.tag_rows()
    away.mkdir()
    pad.rename(away / "pad.wav")
    index(lib)  # an older soundatlas forgot the pad's sample; its tag stays, missing
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:  # check --repair marked it
        conn.execute("UPDATE samples SET size = -1, mtime_ns = -1 WHERE path = 'click.wav'")
    downgrade_schema(atlas_dir, 8)
    lead.rename(away / "lead.wav")  # away during the upgrade
    _stem(lib / "song/drums.wav", 200.0)  # new: the bass's fingerprint, not its content

    s = index(lib, n_jobs=-1)
    assert (s.n_rehashed, s.n_indexed, s.n_removed) == (1, 2, 1), s  # the bass; drums, click
    with Atlas.open(atlas_dir) as a:
        ids = {Path(r.path).stem: r.id for r in a.samples()}
        cur = a.curation_of(ids.values())
        assert cur[ids["bass"]]["tags"] == ["low"]
        assert ids["drums"] not in cur  # nothing of the bass's
        missing = {m["path"]: m["tags"] for m in a.missing_items()}
        assert missing == {"song/lead.wav": ["low"], "drive/pad.wav": ["warm"]}
    with Atlas.open(atlas_dir, write=True) as a:  # forgotten, then brought back from the CSV
        assert a.forget_missing() == 2 and a.missing_items() == []
        assert a.import_tag_rows(csv_rows)["missing"] == 2  # the lead's and the pad's, waiting

    (away / "lead.wav").rename(lib / "song/lead2.wav")  # back, elsewhere
    (away / "pad.wav").rename(lib / "pad.wav")
    shutil.copy2(bass, lib / "bass copy.wav")
    index(lib)
    with Atlas.open(atlas_dir, write=True) as a:
        recs = {r.path: r for r in a.samples()}
        ids = {Path(p).stem: r.id for p, r in recs.items()}
        cur = a.curation_of(ids.values())
        assert cur[ids["lead2"]]["tags"] == cur[ids["bass copy"]]["tags"] == ["low"], (ids, cur)
        assert cur[ids["pad"]]["tags"] == ["warm"] and ids["drums"] not in cur
        assert a.missing_items() == [] and a.legacy_holders() == []
        splits = a.splits()
        assert splits[ids["bass copy"]] == splits[ids["bass"]]  # the copy goes with its file
        a.tag([ids["bass"], ids["lead2"], ids["pad"]], remove=["low", "warm"])
        assert len(csv_rows) == 2  # the bass and the lead: one hash, one row
        assert a.import_tag_rows(csv_rows) == {"changed": 3, "unchanged": 0, "missing": 0}
        assert a.missing_items() == []
        cur = a.curation_of(ids.values())
        assert cur[ids["bass"]]["tags"] == cur[ids["lead2"]]["tags"] == ["low"]
        assert cur[ids["pad"]]["tags"] == ["warm"]


def test_a_copy_goes_to_the_split_its_file_has_even_where_that_was_drawn_from_another_hash(
        tone_library):
    """A sample keeps its split when its hash changes (a long file an older soundatlas
    fingerprinted, hashed whole now): a copy added later goes with it, not where its own hash
    would draw it, so one content never straddles two splits."""
    from soundatlas.atlas import split_of

    index(tone_library)
    src = tone_library / "low/low_037.wav"
    with Atlas.open(tone_library / ".soundatlas", write=True) as a:
        rec = {r.path: r for r in a.samples()}["low/low_037.wav"]
        drawn = split_of(rec.hash, 0)
        kept = "test" if drawn != "test" else "train"  # drawn from another hash, once
        a.splits()  # drawn and stored
        with a.transaction() as c:
            c.execute("UPDATE splits SET split = ? WHERE sample_id = ?", (kept, rec.id))
    shutil.copy2(src, tone_library / "copy.wav")
    index(tone_library)
    with Atlas.open(tone_library / ".soundatlas", write=True) as a:
        ids = {r.path: r.id for r in a.samples()}
        splits = a.splits()
        assert splits[ids["copy.wav"]] == splits[ids["low/low_037.wav"]] == kept


def _as_before_schema_9(lib: Path, stems: list[Path]) -> None:
    """Turn ``lib``'s atlas into what an older soundatlas left: the long files' hashes their
    size, head and tail, and schema 8."""
    from soundatlas.pipeline import legacy_fingerprint

    atlas_dir = lib / ".soundatlas"
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:
        for f in stems:
            conn.execute("UPDATE samples SET hash = ? WHERE path = ?",
                         (legacy_fingerprint(f), f.relative_to(lib).as_posix()))
    downgrade_schema(atlas_dir, 8)


def test_the_upgrade_run_keeps_curation_and_splits_through_refresh_dates_and_names(tmp_path):
    """The first index after the upgrade, with what a user may do at the same time: a feature
    refresh (the unchanged stems keep theirs by path); a stem touched and analysed with another
    --max-duration (at its own path its old hash suffices; it keeps its split); a stem behind a
    folder that cannot be read (no copy of it takes its curation); a missing item whose file
    comes back under its name elsewhere (it takes it) while a new stem with another name and the
    same fingerprint does not."""
    from dataclasses import replace as with_

    from soundatlas.atlas import split_of
    from soundatlas.cqt_params import PAPER_CQT
    from soundatlas.pipeline import content_hash

    lib = tmp_path / "lib"
    bass = _stem(lib / "song/bass.wav", 80.0)
    lead = _stem(lib / "song/lead.wav", 1760.0, seconds=21.0)
    keys = _stem(lib / "vault/keys.wav", 523.0, seconds=22.0)
    pad = _stem(lib / "pad.wav", 330.0, seconds=23.0)
    other = "folded" if PAPER_CQT.kernel != "folded" else "multirate"
    index(lib, params=with_(PAPER_CQT, kernel=other))  # features a refresh analyses again
    atlas_dir = lib / ".soundatlas"
    _as_before_schema_9(lib, [bass, lead, keys, pad])
    with Atlas.open(atlas_dir, write=True) as a:
        ids = {Path(r.path).stem: r.id for r in a.samples()}
        for name in ("bass", "lead", "keys", "pad"):
            a.tag([ids[name]], add=[name])
        a.splits()
        drawn = split_of(content_hash(lead), 0)  # where its whole hash would put it
        lead_split = "test" if drawn != "test" else "train"
        with a.transaction() as c:
            c.execute("UPDATE splits SET split = ? WHERE sample_id = ?", (lead_split, ids["lead"]))
    downgrade_schema(atlas_dir, 8)
    away = tmp_path / "away"
    away.mkdir()
    pad.rename(away / "pad.wav")
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:  # as an older index forgot it
        conn.execute("DELETE FROM samples WHERE path = 'pad.wav'")  # its tag stays, missing
    os.utime(lead, ns=(time.time_ns(), time.time_ns() + 10**9))
    (lib / "vault").rename(tmp_path / "vault")
    (lib / "vault").symlink_to(tmp_path / "nowhere")  # a drive not mounted
    shutil.copy2(tmp_path / "vault/keys.wav", lib / "keys copy.wav")
    _stem(lib / "drums.wav", 200.0, seconds=23.0)  # the pad's fingerprint, another name
    (lib / "restored").mkdir()
    (away / "pad.wav").rename(lib / "restored/pad.wav")

    s = index(lib, max_duration=10.0, refresh_features=True)
    assert s.n_kept_unreadable == 1
    with Atlas.open(atlas_dir, write=True) as a:
        recs = {r.path: r for r in a.samples()}
        cur = a.curation_of([r.id for r in recs.values()])
        tags = {p: cur.get(r.id, {}).get("tags", []) for p, r in recs.items()}
        assert tags == {"song/bass.wav": ["bass"], "song/lead.wav": ["lead"],
                        "vault/keys.wav": ["keys"], "keys copy.wav": [], "drums.wav": [],
                        "restored/pad.wav": ["pad"]}, (s, tags)
        assert recs["song/lead.wav"].id != ids["lead"]  # analysed again
        assert a.splits()[recs["song/lead.wav"].id] == lead_split
        assert a.missing_items() == []
        # what still waits: the keys behind the folder that cannot be read, at its path
        assert [(p, sid is not None) for p, _h, _f, sid, _split in a.legacy_holders()] == [
            ("vault/keys.wav", True)]
        plan = " ".join(row[-1] for row in a.conn.execute(
            "EXPLAIN QUERY PLAN SELECT path FROM legacy_holders WHERE hash = ?", ("x",)))
        assert "legacy_holders_hash" in plan  # no scan per carried file


def test_a_carried_old_hash_leaves_no_missing_item_behind_even_before_the_run_ends(tone_library):
    """Once the one file that had an old hash has its whole hash, the old hash's tags, notes
    and collection places go in the same transaction: a page reading the atlas while index
    runs never shows the file twice (once present, once missing)."""
    index(tone_library)
    atlas_dir = tone_library / ".soundatlas"
    with sqlite3.connect(atlas_dir / "atlas.sqlite") as conn:  # a long file, as an older one saw it
        conn.execute("UPDATE samples SET size = 5000000, hash = 'f1ngerpr1nt'"
                     " WHERE path = 'low/low_037.wav'")
    with Atlas.open(atlas_dir, write=True) as a:
        sid = {r.path: r.id for r in a.samples()}["low/low_037.wav"]
        a.tag([sid], add=["deep"])
        a.add_to_collection("set", [sid], create=True)
    downgrade_schema(atlas_dir, 8)
    with Atlas.open(atlas_dir, write=True) as a:  # migrated: the long file is a holder
        assert [(p, h) for p, h, *_ in a.legacy_holders()] == [
            ("low/low_037.wav", "f1ngerpr1nt")]
        a.rehash([(sid, "low/low_037.wav", "f1ngerpr1nt", "0" * 32)])
        assert a.missing_items() == [] and a.legacy_holders() == []
        assert a.curation_of([sid])[sid]["tags"] == ["deep"]
        assert [i for i, _p in a.collection_members("set")] == [sid]


def _nudge_features(atlas_dir: Path, share: float = 0.16) -> None:
    """Move a share of every stored feature value by one float16 step, as the features of an
    older soundatlas differ from today's (which depended on the batch a file was analysed in)."""
    rng = np.random.default_rng(0)
    for f in (atlas_dir / "features").glob("seg-*.npy"):
        F = np.load(f)
        pick = rng.random(F.shape) < share
        F[pick] = np.nextafter(F[pick], np.float16(np.inf))
        np.save(f, F)


def _tagged_old_stems(lib: Path, tones, **index_options) -> tuple[dict, dict]:
    """Stems (name, frequency) of one length, so of one old hash, indexed and turned into what
    an older soundatlas left (then opened once: schema 9), each tagged with its name, which
    tags them all; (name -> file, name -> sample id)."""
    stems = {n: _stem(lib / f"song/{n}.wav", f) for n, f in tones}
    index(lib, **index_options)
    _as_before_schema_9(lib, list(stems.values()))
    with Atlas.open(lib / ".soundatlas", write=True) as a:
        ids = {Path(r.path).stem: r.id for r in a.samples()}
        for n in stems:
            a.tag([ids[n]], add=[n])
    return stems, ids


def test_stems_moved_before_the_upgrade_take_their_own_curation_and_split(tmp_path):
    """Four stems with one fingerprint, tagged apart, moved before the upgrade, features
    analysed by an older soundatlas (a float16 step off today's here and there): each takes its
    own tags and its split back by its features, the one away during the upgrade run too when it
    comes back; a new stem with the same fingerprint takes nothing."""
    from soundatlas.atlas import split_of
    from soundatlas.pipeline import content_hash

    lib = tmp_path / "lib"
    atlas_dir = lib / ".soundatlas"
    stems, ids = _tagged_old_stems(lib, [("bass", 80.0), ("lead", 1760.0), ("keys", 523.0),
                                         ("pad", 330.0)])
    with Atlas.open(atlas_dir, write=True) as a:
        a.splits()
        kept = {}
        with a.transaction() as c:  # a split no whole hash would draw
            for n, f in stems.items():
                kept[n] = "test" if split_of(content_hash(f), 0) != "test" else "train"
                c.execute("UPDATE splits SET split = ? WHERE sample_id = ?", (kept[n], ids[n]))
    downgrade_schema(atlas_dir, 8)
    _nudge_features(atlas_dir)
    (lib / "song").rename(lib / "moved")
    away = tmp_path / "pad.wav"
    (lib / "moved/pad.wav").rename(away)
    _stem(lib / "new/drums.wav", 200.0)  # the same fingerprint, another sound

    first = index(lib)
    with Atlas.open(atlas_dir) as a:
        state = (first, a.legacy_holders(), a.missing_items())
    away.rename(lib / "moved/pad.wav")
    index(lib)
    every = sorted(stems)  # one hash before: tagging one tagged all four
    with Atlas.open(atlas_dir, write=True) as a:
        recs = {r.path: r for r in a.samples()}
        cur = a.curation_of([r.id for r in recs.values()])
        assert {p: cur.get(r.id, {}).get("tags", []) for p, r in recs.items()} == {
            **{f"moved/{n}.wav": every for n in stems}, "new/drums.wav": []}, state
        splits = a.splits()
        assert {n: splits[recs[f"moved/{n}.wav"].id] for n in stems} == kept
        assert a.missing_items() == [] and a.legacy_holders() == []


def test_stems_silent_in_their_analysed_part_are_told_apart_by_name(tmp_path):
    """Stems whose analysed part is silence have one features summary, which tells nothing:
    moved, a stem takes the holder with its own file name, and a new stem with another name
    takes none."""
    lib = tmp_path / "lib"
    atlas_dir = lib / ".soundatlas"
    stems, _ids = _tagged_old_stems(lib, [("guitar", 196.0), ("vocals", 440.0)],
                                    max_duration=5.0)  # the first 5 s of each: silence
    downgrade_schema(atlas_dir, 8)
    (lib / "take2").mkdir()
    stems["guitar"].rename(lib / "take2/guitar.wav")  # its holder alone waits, silent
    _stem(lib / "bass.wav", 80.0)  # sorts first: would take any holder that matched
    index(lib, max_duration=5.0)
    with Atlas.open(atlas_dir) as a:
        recs = {r.path: r for r in a.samples()}
        cur = a.curation_of([r.id for r in recs.values()])
        both = ["guitar", "vocals"]  # one hash before: tagging one tagged both
        assert {p: cur.get(r.id, {}).get("tags", []) for p, r in recs.items()} == {
            "bass.wav": [], "take2/guitar.wav": both, "song/vocals.wav": both}
        assert a.legacy_holders() == []


def test_a_file_analysed_again_with_the_same_bytes_keeps_its_split(tone_library):
    """A repair (or a refresh) analyses a file again under a new sample id: its split stays,
    even where it was drawn from another hash (a long file an older soundatlas fingerprinted)."""
    from soundatlas.atlas import split_of

    index(tone_library)
    atlas_dir = tone_library / ".soundatlas"
    with Atlas.open(atlas_dir, write=True) as a:
        rec = {r.path: r for r in a.samples()}["low/low_037.wav"]
        a.splits()
        kept = "test" if split_of(rec.hash, 0) != "test" else "train"
        with a.transaction() as c:
            c.execute("UPDATE splits SET split = ? WHERE sample_id = ?", (kept, rec.id))
            c.execute("UPDATE samples SET size = -1, mtime_ns = -1 WHERE id = ?", (rec.id,))
    s = index(tone_library)
    assert s.n_indexed == 1
    with Atlas.open(atlas_dir, write=True) as a:
        again = {r.path: r for r in a.samples()}["low/low_037.wav"]
        assert again.id != rec.id and again.hash == rec.hash
        assert a.splits()[again.id] == kept


def test_the_atlas_keeps_its_max_duration_and_a_new_one_analyses_what_it_reads_otherwise(
        tmp_path, capsys):
    """A limit given once holds for later runs that give none; a higher limit (or none)
    analyses the cut files again whole, a lower one the files longer than it, and the summary
    never states a limit the samples were not cut at."""
    from soundatlas.cli.library import print_index_summary
    from soundatlas.indexing import IndexSummary

    lib = tmp_path / "lib"
    for i, seconds in enumerate((0.3, 2.0, 3.5)):
        write_tone(lib / f"t{i}.wav", 300.0 + 50 * i, seconds=seconds, sr=16000)

    def durations():
        with Atlas.open(lib / ".soundatlas") as a:
            return a.max_duration(), {r.path: round(r.duration, 1) for r in a.samples()}

    s = index(lib, max_duration=1.0)
    assert (s.n_indexed, s.n_truncated) == (3, 2)
    assert durations() == (1.0, {"t0.wav": 0.3, "t1.wav": 1.0, "t2.wav": 1.0})
    s = index(lib)  # the atlas's limit, not 30 s: nothing to do
    assert (s.n_unchanged, s.n_indexed, s.n_truncated, s.max_duration) == (3, 0, 2, 1.0)
    s = index(lib, max_duration=None)
    assert (s.n_indexed, s.n_truncated) == (2, 0)
    assert durations() == (None, {"t0.wav": 0.3, "t1.wav": 2.0, "t2.wav": 3.5})
    s = index(lib, max_duration=3.0)
    assert (s.n_indexed, s.truncated) == (1, ["t2.wav"])
    assert durations() == (3.0, {"t0.wav": 0.3, "t1.wav": 2.0, "t2.wav": 3.0})
    assert index(lib, max_duration=3.0).n_indexed == 0
    with Atlas.open(lib / ".soundatlas", write=True) as a, a.transaction() as c:
        c.execute("DELETE FROM meta WHERE key = 'max_duration'")  # an atlas from before
    s = index(lib)  # its last run's limit, not 30 s: nothing cut anew
    assert (s.n_indexed, s.max_duration, s.truncated) == (0, 3.0, ["t2.wav"])
    # a limit shorter than any sound analysed is refused before the atlas keeps it; one kept
    # by an older soundatlas is named, with the way out
    with pytest.raises(ParameterError, match="at least the shortest sound analysed, 0.002 s"):
        index(lib, max_duration=0.001)
    assert durations()[0] == 3.0
    cli = subprocess.run([str(Path(sys.executable).parent / "soundatlas"), "index", str(lib),
                          "--max-duration", "0.001", "-q"], capture_output=True, text=True)
    assert cli.returncode == 2 and "0.001 s is shorter than the shortest sound analysed " \
        "(0.002 s): give more, or 'none' for no limit" in cli.stderr, cli.stderr
    assert durations()[0] == 3.0
    with Atlas.open(lib / ".soundatlas", write=True) as a:
        a.set_max_duration(0.001)
    with pytest.raises(ParameterError, match=r"keeps a limit of 0.001 s a file.*--max-duration"):
        index(lib)
    assert index(lib, max_duration=3.0).n_indexed == 0
    print_index_summary(IndexSummary(library="l", atlas="a", n_truncated=1, truncated=["x.wav"],
                                     max_duration=None))  # (it raised on None)
    assert "1 long file: only a first part analysed, under an earlier --max-duration, e.g. " \
        "x.wav" in capsys.readouterr().out
