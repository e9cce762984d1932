"""Tests of soundatlas.demo: the FluidSynth renderer of the built-in demo library.

The rendering tests share two small renders (flute and violin, velocity 80, every pitch: 166
notes, about a second of wall time on 2 cores); they are skipped where FluidSynth or the
General MIDI SoundFont is not installed.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundatlas import demo
from soundatlas.errors import AudioReadError, MissingDependencyError, ParameterError

# DESIGN.md §2 (line breaks moved): the default class table must match it.
DESIGN_TABLE = """
french_horn 60 34-77 · violin 40 55-100 · clarinet 71 50-94 · trombone 57 40-77 ·
trumpet 56 54-86 · muted_trumpet 59 54-82 · nylon_guitar 24 40-83 · bassoon 70 34-75 ·
cello 42 36-81 · viola 41 48-88 · distortion_guitar 30 40-88 · flute 73 60-96 · tuba 58 28-65 ·
harp 46 24-103 · piccolo 72 74-108 · oboe 68 58-91 · baritone_sax 67 36-69 · alto_sax 65 49-81 ·
recorder 74 72-98 · english_horn 69 52-84 · contrabass 43 28-67 · soprano_sax 64 56-88 ·
tenor_sax 66 44-76 · pan_flute 75 60-96
"""

CLASSES = ["flute", "violin"]
VELOCITY = 80


def _can_render() -> bool:
    try:
        demo._import_fluidsynth()
        demo.find_soundfont()
    except (MissingDependencyError, AudioReadError):
        return False
    return True


needs_fluidsynth = pytest.mark.skipif(
    not _can_render(), reason="FluidSynth or the GM SoundFont (fluid-soundfont-gm) is missing"
)


# ------------------------------------------------------------------------------------------
# Planning and validation (no FluidSynth needed)


def test_default_classes_match_design():
    expected = {}
    for entry in DESIGN_TABLE.replace("\n", " ").split("·"):
        name, program, pitches = entry.split()
        low, high = pitches.split("-")
        expected[name] = (int(program), int(low), int(high))
    assert demo.DEFAULT_CLASSES == expected
    assert list(demo.DEFAULT_CLASSES) == list(expected)


def test_plan_of_default_set_has_expected_count():
    n_pitches = sum(high - low + 1 for _, low, high in demo.DEFAULT_CLASSES.values())
    notes = demo.plan_notes()
    assert len(notes) == n_pitches * 3 * 2 == 5706
    assert len({n.path for n in notes}) == len(notes)
    assert {n.velocity for n in notes} == {40, 80, 120}
    assert {(n.articulation, n.duration) for n in notes} == {("short", 0.4), ("long", 1.8)}


def test_plan_subset_and_note_path():
    notes = demo.plan_notes(classes=["harp"], velocities=[100], articulations={"hit": 0.1})
    assert len(notes) == 103 - 24 + 1
    first = notes[0]
    assert first == demo.Note("harp", 46, 24, 100, "hit", 0.1)
    assert first.path == "harp/harp_024_v100_hit.wav"


def test_plan_accepts_a_custom_class_table():
    notes = demo.plan_notes(classes={"piano": (0, 60, 61)}, velocities=[64])
    assert [(n.instrument, n.program, n.pitch) for n in notes[::2]] == [
        ("piano", 0, 60),
        ("piano", 0, 61),
    ]
    with pytest.raises(ParameterError, match="piano"):
        demo.plan_notes(classes={"piano": (0, 61, 60)})
    with pytest.raises(ParameterError, match="program=128"):
        demo.plan_notes(classes={"piano": (128, 60, 61)})


def test_unknown_class_is_named_and_valid_ones_listed(tmp_path):
    with pytest.raises(ParameterError) as info:
        demo.render_library(tmp_path, classes=["flute", "kazoo"])
    message = str(info.value)
    assert "'kazoo'" in message and "flute" in message and "pan_flute" in message
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"velocities": [0]}, "velocity=0"),
        ({"velocities": [128]}, "velocity=128"),
        ({"velocities": []}, "velocities"),
        ({"sample_rate": 4000}, "sample_rate=4000"),
        ({"sample_rate": 44100.0}, "sample_rate=44100.0"),
        ({"n_jobs": 0}, "n_jobs=0"),
    ],
)
def test_bad_parameters_raise_parameter_error(tmp_path, kwargs, needle):
    with pytest.raises(ParameterError, match=needle):
        demo.render_library(tmp_path, **kwargs)


def test_missing_soundfont_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "GM.sf2"
    with pytest.raises(MissingDependencyError, match=re.escape(str(missing))):
        demo.find_soundfont(missing)
    with pytest.raises(MissingDependencyError, match=re.escape(str(missing))):
        demo.render_library(tmp_path / "out", soundfont=missing, classes=["flute"])


def test_missing_default_soundfont_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "DEFAULT_SOUNDFONT", str(tmp_path / "FluidR3_GM.sf2"))
    with pytest.raises(MissingDependencyError, match="fluid-soundfont-gm"):
        demo.find_soundfont()


def test_a_file_that_is_not_a_soundfont_is_refused(tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(AudioReadError, match="not a SoundFont"):
        demo.find_soundfont(fake)


@needs_fluidsynth
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_soundfont_fluidsynth_cannot_load_is_refused(tmp_path, n_jobs):
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF\x10\0\0\0sfbkLIST" + bytes(64))
    with pytest.raises(AudioReadError, match="broken.sf2"):
        demo.render_library(tmp_path / "out", soundfont=broken, classes=["flute"], n_jobs=n_jobs)
    assert not (tmp_path / "out" / "metadata.csv").exists()


def test_missing_fluidsynth_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    with pytest.raises(MissingDependencyError, match="Debian package fluidsynth"):
        demo.render_library(tmp_path, classes=["flute"], velocities=[80])


def test_import_does_not_load_fluidsynth():
    code = "import sys, soundatlas.demo; assert 'fluidsynth' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------
# Rendering


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A parallel render of flute + violin at one velocity, with its summary and progress log."""
    out = tmp_path_factory.mktemp("demo") / "lib"
    calls = []
    summary = demo.render_library(
        out,
        classes=CLASSES,
        velocities=[VELOCITY],
        n_jobs=2,
        progress=lambda n_done, n_total: calls.append((n_done, n_total)),
    )
    return out, summary, calls


def _read_metadata(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _wav_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))


@needs_fluidsynth
def test_summary_accounts_for_every_note(library):
    out, summary, calls = library
    notes = demo.plan_notes(classes=CLASSES, velocities=[VELOCITY])
    assert summary.n_notes == len(notes) == (37 + 46) * 2
    assert summary.out == out
    assert summary.n_files_written + len(summary.skipped) == summary.n_notes
    assert summary.seconds > 0
    # FluidR3_GM's violin has no sample for pitch 94: reported, not written.
    assert {(s.note.instrument, s.note.pitch) for s in summary.skipped} == {("violin", 94)}
    assert all("silent" in s.reason for s in summary.skipped)
    assert not any((out / s.note.path).exists() for s in summary.skipped)
    assert 0.05 < summary.peak < 1.0 and summary.clipped == []
    assert calls[0] == (0, summary.n_notes) and calls[-1] == (summary.n_notes, summary.n_notes)
    assert [n for n, _ in calls] == sorted(n for n, _ in calls)


@needs_fluidsynth
def test_files_are_16_bit_mono_and_not_silent(library):
    out, summary, _ = library
    files = _wav_files(out)
    assert len(files) == summary.n_files_written
    for path in files:
        info = sf.info(out / path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "WAV",
            "PCM_16",
            44100,
            1,
        )
        y, _ = sf.read(out / path, dtype="int16")
        assert np.abs(y.astype(np.int32)).max() > 100, path  # above -50 dBFS
    assert not list(out.rglob("*.part"))


@needs_fluidsynth
def test_metadata_matches_the_files(library):
    out, _, _ = library
    columns, rows = _read_metadata(out)
    assert columns == ["path", "instrument", "pitch", "velocity", "articulation"]
    paths = [r["path"] for r in rows]
    assert paths == sorted(paths) == _wav_files(out)
    for r in rows:
        name = f"{r['instrument']}_{int(r['pitch']):03d}_v{int(r['velocity']):03d}"
        assert r["path"] == f"{r['instrument']}/{name}_{r['articulation']}.wav"
        assert r["instrument"] in CLASSES and r["velocity"] == str(VELOCITY)


def _f0(y: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 5000.0) -> float:
    """Fundamental frequency by YIN's cumulative mean normalised difference (first dip < 0.15)."""
    n = 4096
    x = y[:n].astype(np.float64)
    max_lag = int(sr / fmin)
    spectrum = np.fft.rfft(np.concatenate([x, np.zeros(n)]))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:max_lag]
    energy = np.cumsum(x**2)
    lags = np.arange(1, max_lag)
    diff = energy[n - 1 - lags] + (energy[-1] - energy[lags - 1]) - 2 * acf[lags]
    cmnd = diff * lags / np.maximum(np.cumsum(diff), 1e-12)
    lo = int(sr / fmax)
    candidates = np.nonzero(cmnd[lo:] < 0.15)[0]
    i = lo + (candidates[0] if len(candidates) else np.argmin(cmnd[lo:]))
    while i + 1 < len(cmnd) and cmnd[i + 1] < cmnd[i]:
        i += 1
    shift = 0.0  # parabolic interpolation: whole-sample lags are coarse at high pitches
    if 0 < i < len(cmnd) - 1:
        a, b, c = cmnd[i - 1], cmnd[i], cmnd[i + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
    return sr / (lags[i] + shift)


@needs_fluidsynth
@pytest.mark.parametrize("instrument", CLASSES)
def test_pitch_is_the_midi_pitch(library, instrument):
    out, _, _ = library
    _, rows = _read_metadata(out)
    long_notes = [r for r in rows if r["instrument"] == instrument and r["articulation"] == "long"]
    assert len(long_notes) > 30
    for r in long_notes:
        y, sr = sf.read(out / r["path"])
        f0 = _f0(y[int(0.8 * sr) :], sr)  # in the sustain
        expected = 440.0 * 2 ** ((int(r["pitch"]) - 69) / 12)
        assert abs(12 * np.log2(f0 / expected)) < 0.5, (r["path"], f0, expected)


def _sounding_seconds(y: np.ndarray, sr: int) -> float:
    """Time of the last sample above -40 dB of the file's peak."""
    loud = np.nonzero(np.abs(y) > 0.01 * np.abs(y).max())[0]
    return loud[-1] / sr


@needs_fluidsynth
def test_long_notes_sound_longer_than_short_ones(library):
    out, _, _ = library
    for pitch in (60, 72, 84, 96):
        short, sr = sf.read(out / f"flute/flute_{pitch:03d}_v080_short.wav")
        long, _ = sf.read(out / f"flute/flute_{pitch:03d}_v080_long.wav")
        assert len(short) == 44160 and len(long) == 105920  # held + 0.6 s tail, 64-frame blocks
        assert _sounding_seconds(long, sr) > _sounding_seconds(short, sr) + 1.0
        assert np.abs(short[:441]).max() > 0  # natural start: sound within the first 10 ms


@needs_fluidsynth
def test_rerender_is_byte_identical_whatever_n_jobs(library, tmp_path):
    out, _, _ = library
    again = tmp_path / "again"
    # Leftovers of an interrupted render are overwritten.
    (again / "flute").mkdir(parents=True)
    (again / "flute" / "flute_060_v080_long.wav").write_bytes(b"truncated")
    (again / "metadata.csv").write_text("stale\n")
    demo.render_library(again, classes=CLASSES, velocities=[VELOCITY], n_jobs=1)
    assert _wav_files(again) == _wav_files(out)
    for path in _wav_files(out) + ["metadata.csv"]:
        assert (again / path).read_bytes() == (out / path).read_bytes(), path


@needs_fluidsynth
def test_a_note_does_not_depend_on_the_other_classes_rendered(library, tmp_path):
    out, _, _ = library
    alone = tmp_path / "alone"
    demo.render_library(alone, classes=["violin"], velocities=[VELOCITY], n_jobs=2)
    files = _wav_files(alone)
    assert files and all(p.startswith("violin/") for p in files)
    for path in files:
        assert (alone / path).read_bytes() == (out / path).read_bytes(), path


@needs_fluidsynth
def test_render_note_matches_the_written_file(library):
    out, _, _ = library
    note = demo.Note("flute", 73, 69, VELOCITY, "short", 0.4)
    y = demo.render_note(note)
    assert y.dtype == np.float32 and y.ndim == 1
    written, _ = sf.read(out / note.path, dtype="int16")
    np.testing.assert_array_equal(demo.to_int16(y), written)
