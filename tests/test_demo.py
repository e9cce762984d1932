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

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md"


def _design_demo_section() -> str:
    """docs/DESIGN.md §2, the demo library: the documented class table and note count."""
    text = DESIGN.read_text()
    start = text.index("## 2. The demo library")
    return text[start:text.index("\n## ", start + 1)]


def _design_classes() -> dict[str, tuple[int, int, int]]:
    """The class table of docs/DESIGN.md §2 (``| class | GM program | MIDI pitches |`` twice a
    row), read down the left half, then the right."""
    halves: tuple[list, list] = ([], [])
    for line in _design_demo_section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"\d+", cells[1]):
            for half, (name, program, pitches) in zip(halves, (cells[:3], cells[3:])):
                low, high = pitches.split("-")
                half.append((name, (int(program), int(low), int(high))))
    return dict(halves[0] + halves[1])


CLASSES = ["flute", "violin"]
VELOCITY = 80


def _can_render() -> bool:
    try:
        demo.soundfont.import_fluidsynth()
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
    expected = _design_classes()
    assert len(expected) == 24, "the table of docs/DESIGN.md §2 was not found whole"
    assert demo.DEFAULT_CLASSES == expected
    assert list(demo.DEFAULT_CLASSES) == list(expected)
    for name, (program, _, _) in demo.DEFAULT_CLASSES.items():  # each is its GM program
        assert demo.GM_PROGRAMS[program] == name


def test_plan_of_default_set_has_expected_count():
    n_pitches = sum(high - low + 1 for _, low, high in demo.DEFAULT_CLASSES.values())
    notes = demo.plan_notes()
    documented = re.search(r"plans ([\d,]+)\s+notes", _design_demo_section())
    assert len(notes) == n_pitches * 3 * 2 == int(documented.group(1).replace(",", ""))
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
    monkeypatch.setattr(demo.soundfont, "DEFAULT_SOUNDFONT", str(tmp_path / "FluidR3_GM.sf2"))
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


def _other_bank(tmp_path: Path) -> Path:
    """The default SoundFont under another name: another bank (a hard link where possible)."""
    import os
    import shutil

    other = tmp_path / "OtherMaker.sf2"
    source = demo.find_soundfont()
    try:
        os.link(source, other)
    except OSError:
        shutil.copyfile(source, other)
    return other


@needs_fluidsynth
def test_a_second_banks_demo_set_does_not_overwrite_the_first(library, tmp_path):
    out, _, _ = library
    mixed = tmp_path / "mixed"
    demo.render_library(mixed, classes=["violin"], velocities=[VELOCITY], n_jobs=1)
    before = {p: (mixed / p).read_bytes() for p in _wav_files(mixed) + ["metadata.csv"]}
    assert (mixed / demo.DEMO_BANK_FILE).read_text().strip() == "FluidR3_GM"
    other = _other_bank(tmp_path)
    with pytest.raises(ParameterError, match=r"FluidR3_GM.*OtherMaker.*another folder"):
        demo.render_library(mixed, classes=["violin"], velocities=[VELOCITY], n_jobs=1,
                            soundfont=other)
    assert {p: (mixed / p).read_bytes() for p in _wav_files(mixed) + ["metadata.csv"]} == before
    with pytest.raises(ParameterError, match="FluidR3_GM"):  # nor beside it, in new folders
        demo.render_library(mixed, classes=["flute"], velocities=[VELOCITY], n_jobs=1,
                            soundfont=other)
    assert not (mixed / "flute").exists()
    demo.render_library(mixed, classes=["violin"], velocities=[VELOCITY], n_jobs=1)  # same bank
    assert {p: (mixed / p).read_bytes() for p in _wav_files(mixed) + ["metadata.csv"]} == before
    demo.render_library(tmp_path / "other", classes=["violin"], velocities=[VELOCITY], n_jobs=1,
                        soundfont=other)
    assert (tmp_path / "other" / demo.DEMO_BANK_FILE).read_text().strip() == "OtherMaker"


@needs_fluidsynth
def test_two_soundfonts_of_one_name_do_not_share_a_bank_folder(tmp_path):
    """The bank label is the SoundFont's file name: another maker's file of the same name
    rendered into the same folder overwrote the first's notes under the first's label."""
    import shutil

    from soundatlas.demo.library import SOUNDFONT_FILE

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mine, theirs = tmp_path / "a" / "Bank.sf2", tmp_path / "b" / "Bank.sf2"
    shutil.copyfile(demo.find_soundfont(), mine)
    shutil.copyfile(mine, theirs)
    with open(theirs, "r+b") as f:  # another file: its name in the INFO chunk changed
        at = f.read(4096).index(b"INAM") + 8
        f.seek(at)
        f.write(b"X")
    out = tmp_path / "lib"
    kw = dict(sound_set="drums", kits=["standard"], drum_keys=[36, 38], velocities=[100],
              n_jobs=1)
    demo.render_library(out, soundfont=mine, **kw)
    before = {p: p.read_bytes() for p in sorted((out / "drums" / "Bank").rglob("*.*"))}
    assert (out / "drums" / "Bank" / SOUNDFONT_FILE) in before
    with pytest.raises(ParameterError, match=r"another file of the same name.*a name of its own"):
        demo.render_library(out, soundfont=theirs, **kw)
    assert {p: p.read_bytes() for p in sorted((out / "drums" / "Bank").rglob("*.*"))} == before
    demo.render_library(out, soundfont=mine, **kw)  # the same file again: rendered
    assert demo.render_library(tmp_path / "lib2", soundfont=theirs, **kw).n_files_written == 2


@needs_fluidsynth
def test_render_note_matches_the_written_file(library):
    out, _, _ = library
    note = demo.Note("flute", 73, 69, VELOCITY, "short", 0.4)
    y = demo.render_note(note)
    assert y.dtype == np.float32 and y.ndim == 1
    written, _ = sf.read(out / note.path, dtype="int16")
    np.testing.assert_array_equal(demo.to_int16(y), written)


# ------------------------------------------------------------------------------------------
# The gm, drums and synth sets: tables and planning (no FluidSynth needed)


def test_gm_table_has_128_unique_names_in_16_families_of_8():
    assert len(demo.GM_PROGRAMS) == 128 == len(set(demo.GM_PROGRAMS))
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in demo.GM_PROGRAMS)
    assert len(demo.GM_FAMILIES) == 16
    families = [demo.gm_family(p) for p in range(128)]
    assert all(families.count(f) == 8 for f in demo.GM_FAMILIES)
    named = {p: (demo.GM_PROGRAMS[p], demo.gm_family(p)) for p in (0, 8, 19, 24, 33, 40, 46, 47,
                                                                  48, 56, 64, 73, 80, 88, 96,
                                                                  104, 114, 127)}
    assert named == {
        0: ("acoustic_grand_piano", "piano"), 8: ("celesta", "chromatic_percussion"),
        19: ("church_organ", "organ"), 24: ("nylon_guitar", "guitar"),
        33: ("electric_bass_finger", "bass"), 40: ("violin", "strings"), 46: ("harp", "strings"),
        47: ("timpani", "strings"), 48: ("string_ensemble_1", "ensemble"),
        56: ("trumpet", "brass"), 64: ("soprano_sax", "reed"), 73: ("flute", "pipe"),
        80: ("lead_1_square", "synth_lead"), 88: ("pad_1_new_age", "synth_pad"),
        96: ("fx_1_rain", "synth_effects"), 104: ("sitar", "ethnic"),
        114: ("steel_drums", "percussive"), 127: ("gunshot", "sound_effects"),
    }  # fmt: skip


def test_every_demo_class_has_its_own_name_and_range_in_the_gm_table():
    for name, (program, low, high) in demo.DEFAULT_CLASSES.items():
        assert demo.GM_PROGRAMS[program] == name
        assert demo.gm_range(program) == (low, high)
    for program in range(128):
        low, high = demo.gm_range(program)
        assert 0 <= low < high <= 127


def test_gm_plan_thins_pitches_by_the_step_and_labels_every_note():
    notes = demo.plan_gm(bank="MyBank")
    assert len(notes) == 7218 and demo.GM_PITCH_STEP == 5
    assert len({n.path for n in notes}) == len(notes)
    for program in range(128):
        pitches = demo.gm_pitches(program)
        low, high = demo.gm_range(program)
        assert len(pitches) >= 3 and all(low <= p <= high for p in pitches)
        assert all(p % 5 == program % 5 for p in pitches)
        assert pitches[0] - low < 5 and high - pitches[-1] < 5
    violin = [n for n in notes if n.instrument == "violin"]
    assert sorted({n.pitch for n in violin}) == list(range(55, 101, 5))
    first = violin[0]
    assert first.path == "gm/MyBank/violin/violin_055_v040_short.wav"
    assert first.labels == {"instrument": "violin", "pitch": "55", "velocity": "40",
                            "articulation": "short", "family": "strings", "bank": "MyBank"}
    dense = demo.plan_gm(bank="b", programs=["timpani", 0], pitch_step=1, velocities=[80])
    assert {n.instrument for n in dense} == {"timpani", "acoustic_grand_piano"}
    assert len(dense) == ((57 - 38 + 1) + (108 - 21 + 1)) * 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"programs": ["violin", "kazoo"]}, "'kazoo'"),
        ({"programs": [128]}, "program=128"),
        ({"pitch_step": 0}, "pitch_step=0"),
        ({"bank": "my/bank"}, "bank='my/bank'"),
        ({"velocities": [200]}, "velocity=200"),
    ],
)
def test_gm_plan_names_a_bad_parameter(kwargs, needle):
    with pytest.raises(ParameterError, match=re.escape(needle)):
        demo.plan_gm(**{"bank": "b", **kwargs})


@pytest.mark.parametrize(
    ("key", "kit", "drum", "drum_class"),
    [
        (35, "standard", "acoustic_bass_drum", "kick"),
        (36, "tr808", "bass_drum_1", "kick"),
        (37, "standard", "side_stick", "snare"),
        (38, "jazz", "acoustic_snare", "snare"),
        (40, "standard", "electric_snare", "snare"),
        (42, "standard", "closed_hi_hat", "hi-hat"),
        (44, "room", "pedal_hi_hat", "hi-hat"),
        (46, "standard", "open_hi_hat", "hi-hat"),
        (41, "standard", "low_floor_tom", "tom"),
        (50, "power", "high_tom", "tom"),
        (49, "standard", "crash_cymbal_1", "cymbal"),
        (53, "brush", "ride_bell", "cymbal"),
        (59, "standard", "ride_cymbal_2", "cymbal"),
        (39, "standard", "hand_clap", "hand_percussion"),
        (56, "standard", "cowbell", "hand_percussion"),
        (63, "standard", "open_hi_conga", "hand_percussion"),
        (81, "electronic", "open_triangle", "hand_percussion"),
        (58, "standard", "vibraslap", "effect"),
        (71, "standard", "short_whistle", "effect"),
        (72, "standard", "long_whistle", "effect"),
        (42, "orchestra", "timpani", "tom"),
        (54, "orchestra", "tambourine", "hand_percussion"),
        (39, "sfx", "high_q", "effect"),
        (58, "sfx", "applause", "effect"),
        (84, "sfx", "bubbles", "effect"),
    ],
)
def test_drum_names_and_classes(key, kit, drum, drum_class):
    assert demo.drum_name(key, kit=kit) == drum
    assert demo.drum_class(key, kit=kit) == drum_class


def test_every_percussion_key_has_one_of_the_seven_classes():
    assert list(demo.GM_PERCUSSION) == list(range(35, 82))
    assert list(demo.GS_SFX) == list(range(39, 85))
    listed = [k for keys in demo.DRUM_CLASSES.values() for k in keys]
    assert len(listed) == len(set(listed))
    classes = {demo.drum_class(k) for k in demo.GM_PERCUSSION}
    assert classes == set(demo.DRUM_CLASS_NAMES) and len(classes) == 7
    with pytest.raises(ParameterError, match="key=34"):
        demo.drum_class(34)
    with pytest.raises(ParameterError, match="key=85"):
        demo.drum_class(85, kit="sfx")


def test_drum_plan_covers_every_kit_key_and_velocity():
    hits = demo.plan_drums(bank="B", velocities=[80])
    assert len(hits) == 8 * 47 + 46
    assert len({h.path for h in hits}) == len(hits)
    some = demo.plan_drums(bank="B", kits=["sfx", "standard"], keys=[36, 58], velocities=[40, 120])
    assert [(h.kit, h.key, h.velocity) for h in some] == [
        ("standard", 36, 40), ("standard", 36, 120), ("standard", 58, 40), ("standard", 58, 120),
        ("sfx", 58, 40), ("sfx", 58, 120),
    ]  # fmt: skip
    assert some[0].path == "drums/B/standard/standard_036_bass_drum_1_v040.wav"
    assert some[0].labels == {"drum": "bass_drum_1", "drum_class": "kick", "kit": "standard",
                              "velocity": "40", "bank": "B"}
    assert some[-1].labels["drum"] == "applause" and some[-1].kit_program == 56
    with pytest.raises(ParameterError, match="'kazoo'"):
        demo.plan_drums(bank="B", kits=["kazoo"])


def test_trim_tail_keeps_the_sound_and_a_short_faded_margin():
    sr = 1000
    t = np.arange(2 * sr) / sr
    y = (np.sin(2 * np.pi * 50 * t) * np.exp(-t / 0.05)).astype(np.float32)  # -60 dB at 0.345 s
    out = demo.trim_tail(y, sr)
    last = np.flatnonzero(np.abs(y) > np.abs(y).max() * 1e-3)[-1]
    assert len(out) == last + 1 + round(demo.DRUM_TAIL_MARGIN * sr)
    np.testing.assert_array_equal(out[: last - 20], y[: last - 20])
    assert abs(out[-1]) < abs(y[len(out) - 1]) or y[len(out) - 1] == 0
    silent = np.zeros(100, dtype=np.float32)
    assert demo.trim_tail(silent, sr) is silent


def test_kits_are_recognised_by_program_and_name():
    presets = {(0, 0): "Piano", (128, 0): "128", (128, 8): "Room", (128, 25): "TR 808",
               (128, 48): "Orchestra Kit", (128, 56): "Marching Snare", (128, 57): "SFX"}
    kits, notes = demo.soundfont_kits(presets)
    assert kits == {"standard": 0, "room": 8, "tr808": 25, "orchestra": 48}
    assert notes == ["bank 128 program 56 is 'Marching Snare', not the sfx kit: not rendered"]
    assert demo.soundfont_kits({(128, 56): "SFX"})[0] == {"sfx": 56}


def test_silent_summary_counts_per_instrument_in_plan_order():
    def note(name, pitch):
        note = demo.Note(name, 0, pitch, 80, "long", 1.8)
        return demo.SkippedNote(note, demo.items.SILENT_REASON)

    skipped = ([note("violin", p) for p in range(5)] + [note("recorder", 98)] * 2
               + [note("contrabass", p) for p in range(30)])
    assert demo.silent_summary(skipped) == (
        "37 silent notes not written: violin 5, recorder 2, contrabass 30"
    )
    assert demo.silent_summary(skipped[:1]) == "1 silent note not written: violin 1"


def test_bank_name_is_the_file_stem_behind_links(tmp_path):
    target = tmp_path / "My Bank (v2).sf3"
    target.write_bytes(b"")
    link = tmp_path / "default-GM.sf2"
    link.symlink_to(target)
    assert demo.bank_name(link) == "My_Bank_v2"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sound_set": "everything"}, "sound_set='everything'"),
        ({"sound_set": "gm", "classes": ["kazoo"]}, "'kazoo'"),
        ({"sound_set": "drums", "kits": ["cowbell_kit"]}, "'cowbell_kit'"),
        ({"sound_set": "drums", "drum_keys": [300]}, "key=300"),
        ({"sound_set": "gm", "pitch_step": 0}, "pitch_step=0"),
        ({"sound_set": "synth", "synth_count": 0}, "count=0"),
        ({"sound_set": "synth", "synth_seed": -1}, "seed=-1"),
        ({"audio_format": "mp3"}, "audio_format='mp3'"),
    ],
)
def test_bad_set_parameters_are_named_before_anything_is_written(tmp_path, kwargs, needle):
    with pytest.raises(ParameterError, match=re.escape(needle)):
        demo.render_library(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------
# Rendering the sets


SET_CLASSES = ["violin", "timpani", "acoustic_grand_piano"]
SET_KITS = ["standard", "orchestra", "tr808"]
# FluidR3_GM's TR-808 kit has no sound for vibraslap (58) and the timbales (65, 66).
SET_KEYS = [35, 36, 38, 42, 46, 49, 58, 65]
N_SYNTH = 24


@pytest.fixture(scope="module")
def sets_library(tmp_path_factory):
    """One OUT holding a demo render (contrabass) and then gm + drums + synth subsets."""
    out = tmp_path_factory.mktemp("sets") / "lib"
    demo_summary = demo.render_library(out, classes=["contrabass"], velocities=[VELOCITY],
                                       n_jobs=2)
    summary = demo.render_library(
        out, sound_set="all", classes=SET_CLASSES, kits=SET_KITS, drum_keys=SET_KEYS,
        velocities=[VELOCITY], synth_count=N_SYNTH, n_jobs=2,
    )  # fmt: skip
    return out, demo_summary, summary


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _audio_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))


@needs_fluidsynth
def test_fluidr3_kits_are_detected():
    presets = demo.soundfont_presets()
    assert sum(1 for bank, _ in presets if bank == 0) == 128
    kits, notes = demo.soundfont_kits(presets)
    assert list(kits) == ["standard", "room", "power", "electronic", "tr808", "jazz", "brush",
                          "orchestra"]
    assert notes == []


@needs_fluidsynth
def test_sets_summary_parts_and_messages(sets_library):
    out, _, summary = sets_library
    assert [(p.sound_set, p.folder) for p in summary.parts] == [
        ("gm", "gm/FluidR3_GM"), ("drums", "drums/FluidR3_GM"), ("synth", "synth/procedural_s0"),
    ]  # fmt: skip
    n_gm = sum(len(demo.gm_pitches(demo.GM_PROGRAMS.index(c))) for c in SET_CLASSES) * 2
    assert [p.n_notes for p in summary.parts] == [n_gm, 3 * len(SET_KEYS), N_SYNTH]
    assert summary.n_files_written + len(summary.skipped) == summary.n_notes
    assert all(p.n_bytes > 0 for p in summary.parts)
    assert summary.n_bytes == sum(p.n_bytes for p in summary.parts)
    assert summary.messages == []  # every kit asked for is there
    assert summary.silent_lines() == [
        "drums/FluidR3_GM: 2 silent notes not written: tr808 2"
    ]
    assert {(s.note.kit, s.note.key) for s in summary.skipped} == {("tr808", 58), ("tr808", 65)}


@needs_fluidsynth
def test_root_metadata_lists_every_file_of_every_set_with_its_labels(sets_library):
    out, _, _ = sets_library
    rows = _rows(out / "metadata.csv")
    assert [r["path"] for r in rows] == _audio_files(out)
    with open(out / "metadata.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:5] == ["path", "instrument", "pitch", "velocity", "articulation"]
    assert set(header) >= {"family", "drum", "drum_class", "kit", "bank"}
    by_set = {}
    for r in rows:
        by_set.setdefault(r["path"].split("/")[0], []).append(r)
    assert set(by_set) == {"contrabass", "gm", "drums", "synth"}
    assert all(r["bank"] == "" and r["instrument"] == "contrabass" for r in by_set["contrabass"])
    families = {"violin": "strings", "timpani": "strings", "acoustic_grand_piano": "piano"}
    for r in by_set["gm"]:
        assert r["family"] == families[r["instrument"]] and r["bank"] == "FluidR3_GM"
        program = demo.GM_PROGRAMS.index(r["instrument"])
        assert int(r["pitch"]) in demo.gm_pitches(program)
        assert r["path"] == (f"gm/FluidR3_GM/{r['instrument']}/{r['instrument']}_"
                             f"{int(r['pitch']):03d}_v080_{r['articulation']}.wav")
        assert r["drum"] == r["drum_class"] == ""
    for r in by_set["drums"]:
        key = int(r["path"].rsplit("/", 1)[1].split("_")[1])
        assert r["drum"] == demo.drum_name(key, kit=r["kit"])
        assert r["drum_class"] == demo.drum_class(key, kit=r["kit"])
        assert r["bank"] == "FluidR3_GM" and r["instrument"] == r["pitch"] == ""
    classes = {(r["kit"], r["drum"]): r["drum_class"] for r in by_set["drums"]}
    assert classes[("standard", "bass_drum_1")] == "kick"
    assert classes[("tr808", "closed_hi_hat")] == "hi-hat"
    assert classes[("orchestra", "timpani")] == "tom"
    assert all(r["bank"] == "procedural" for r in by_set["synth"])
    # each part's own manifest: paths relative to its folder, same labels
    for folder in ("gm/FluidR3_GM", "drums/FluidR3_GM", "synth/procedural_s0"):
        own = _rows(out / folder / "metadata.csv")
        assert [folder + "/" + r["path"] for r in own] == [r["path"] for r in rows
                                                           if r["path"].startswith(folder)]


@needs_fluidsynth
def test_silent_notes_are_listed_beside_the_metadata(sets_library):
    out, demo_summary, _ = sets_library
    assert demo_summary.silent_lines() == ["20 silent notes not written: contrabass 20"]
    silent = _rows(out / "silent.csv")
    assert len(silent) == 20 + 2
    assert {r["path"].split("/")[0] for r in silent} == {"contrabass", "drums"}
    assert {int(r["pitch"]) for r in silent if r["instrument"] == "contrabass"} == set(
        range(58, 68))
    assert not any((out / r["path"]).exists() for r in silent)
    drums = _rows(out / "drums/FluidR3_GM/silent.csv")
    assert [r["path"] for r in drums] == ["tr808/tr808_058_vibraslap_v080.wav",
                                          "tr808/tr808_065_high_timbale_v080.wav"]


@needs_fluidsynth
def test_a_gm_violin_is_the_demo_violin(sets_library):
    out, _, _ = sets_library
    note = demo.Note("violin", 40, 55, VELOCITY, "long", 1.8)
    written, _ = sf.read(out / "gm/FluidR3_GM/violin/violin_055_v080_long.wav", dtype="int16")
    np.testing.assert_array_equal(demo.to_int16(demo.render_note(note)), written)


@needs_fluidsynth
def test_a_rerun_with_fewer_classes_keeps_the_rows_of_the_files_it_left(tmp_path):
    """Rendering gm violin and timpani, then violin alone into the same folder, left the
    timpani files on disk and took their rows out of the manifests: `index` then labelled
    them with nothing. Rows of files a rerun does not plan stay while their files do; the
    demo set's too."""
    out = tmp_path / "lib"
    kw = dict(velocities=[VELOCITY], pitch_step=24, n_jobs=1)
    demo.render_library(out, sound_set="gm", classes=["violin", "timpani"], **kw)
    demo.render_library(out, classes=["contrabass", "flute"], velocities=[VELOCITY], n_jobs=1)
    before = {r["path"]: r for r in _rows(out / "metadata.csv")}
    assert {r["instrument"] for r in before.values()} >= {"timpani", "violin", "flute"}
    def interrupted(done, total):  # Ctrl-C as the render starts, its manifests removed
        raise KeyboardInterrupt

    for set_kw in (dict(sound_set="gm", classes=["violin"], **kw),
                   dict(classes=["contrabass"], velocities=[VELOCITY], n_jobs=1)):
        with pytest.raises(KeyboardInterrupt):
            demo.render_library(out, progress=interrupted, **set_kw)
        demo.render_library(out, **set_kw)  # run again: the rows kept aside are back
    after = {r["path"]: r for r in _rows(out / "metadata.csv")}
    assert after == before
    assert not list(out.rglob(".kept-*"))
    part = {r["path"] for r in _rows(out / "gm/FluidR3_GM/metadata.csv")}
    assert any(p.startswith("timpani/") for p in part)
    # a file gone since: its row goes too
    gone = next(p for p in before if p.startswith("gm/FluidR3_GM/timpani/"))
    (out / gone).unlink()
    demo.render_library(out, sound_set="gm", classes=["violin"], **kw)
    assert set(r["path"] for r in _rows(out / "metadata.csv")) == set(before) - {gone}


@needs_fluidsynth
def test_drum_files_are_one_shots_trimmed_after_the_sound(sets_library):
    out, _, _ = sets_library
    base = out / "drums/FluidR3_GM"
    lengths = {}
    for path in sorted(base.rglob("*.wav")):
        y, sr = sf.read(path)
        assert sr == 44100 and y.ndim == 1
        assert np.abs(y[:441]).max() > 0.01, path  # sounds within 10 ms of the start
        assert len(y) <= demo.DRUM_MAX_SECONDS * sr + 64  # whole 64-frame blocks
        # no silent tail: the last 20 ms still hold a sample near -DRUM_TRIM_DB of the peak
        # (-6 dB of slack for the int16 rounding of samples a few steps from zero)
        floor = np.abs(y).max() * 10 ** (-(demo.DRUM_TRIM_DB + 6) / 20)
        assert np.abs(y[-round(2 * demo.DRUM_TAIL_MARGIN * sr) :]).max() > floor, path
        lengths[path.name] = len(y) / sr
    assert lengths["standard_042_closed_hi_hat_v080.wav"] < 1.0  # not padded to 1 s
    assert lengths["tr808_042_closed_hi_hat_v080.wav"] < 0.3
    assert lengths["standard_049_crash_cymbal_1_v080.wav"] > 2.0  # the ring is kept
    assert (lengths["standard_042_closed_hi_hat_v080.wav"]
            < lengths["standard_046_open_hi_hat_v080.wav"])


@needs_fluidsynth
def test_drum_and_synth_renders_are_byte_identical_whatever_n_jobs_and_neighbours(
    sets_library, tmp_path
):
    out, _, _ = sets_library
    again = tmp_path / "again"
    demo.render_library(again, sound_set="drums", kits=["tr808", "orchestra"], drum_keys=[42, 49],
                        velocities=[VELOCITY], n_jobs=1)
    demo.render_library(again, sound_set="synth", synth_count=N_SYNTH, n_jobs=1)
    files = _audio_files(again)
    assert len(files) == 4 + N_SYNTH
    for path in files:
        assert (again / path).read_bytes() == (out / path).read_bytes(), path
    assert (again / "synth/procedural_s0/metadata.csv").read_bytes() == (
        out / "synth/procedural_s0/metadata.csv").read_bytes()


@needs_fluidsynth
def test_rendering_a_set_again_keeps_the_other_sets_in_the_root_metadata(sets_library, tmp_path):
    import shutil

    out, _, _ = sets_library
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "metadata.csv").read_bytes()
    demo.render_library(copy, sound_set="drums", kits=SET_KITS, drum_keys=SET_KEYS,
                        velocities=[VELOCITY], n_jobs=2)
    assert (copy / "metadata.csv").read_bytes() == before
    demo.render_library(copy, classes=["contrabass"], velocities=[VELOCITY], n_jobs=2)
    assert (copy / "metadata.csv").read_bytes() == before


@needs_fluidsynth
def test_a_kit_the_soundfont_lacks_is_named(tmp_path):
    with pytest.raises(ParameterError, match="FluidR3_GM: no sfx kit in bank 128"):
        demo.render_library(tmp_path, sound_set="drums", kits=["sfx"], n_jobs=1)


@needs_fluidsynth
def test_a_soundfont_without_melodic_presets_renders_no_gm(monkeypatch, tmp_path):
    monkeypatch.setattr(demo.sets, "soundfont_presets", lambda soundfont: {(128, 0): "Standard"})
    with pytest.raises(ParameterError, match="no preset in bank 0"):
        demo.render_library(tmp_path, sound_set="gm", n_jobs=1)


@needs_fluidsynth
def test_demo_classes_the_soundfont_has_no_preset_for_are_named_not_rendered(monkeypatch,
                                                                             tmp_path):
    """The demo set rendered every note of a class the SoundFont has no preset for, silent,
    with a FluidSynth error line a note, and exited 0 having written nothing. Those classes are
    named once and left out; with none left, nothing to render is an error."""
    real = demo.sets.soundfont_presets()
    flute = 73  # its General MIDI program
    monkeypatch.setattr(demo.sets, "soundfont_presets",
                        lambda soundfont: {k: v for k, v in real.items() if k != (0, flute)})
    summary = demo.render_library(tmp_path / "a", classes=["flute", "contrabass"],
                                  velocities=[VELOCITY], n_jobs=1)
    assert any("no bank-0 preset for the demo classes flute" in m for m in summary.messages)
    assert summary.n_notes > 0 and not any(s.note.instrument == "flute" for s in summary.skipped)
    assert {r["instrument"] for r in _rows(tmp_path / "a" / "metadata.csv")} == {"contrabass"}
    with pytest.raises(ParameterError, match="no bank-0 preset for the demo classes flute"):
        demo.render_library(tmp_path / "b", classes=["flute"], velocities=[VELOCITY], n_jobs=1)


@needs_fluidsynth
def test_cli_summarises_silent_notes_in_one_line(tmp_path, capsys):
    from soundatlas.cli import main

    args = ["demo-library", str(tmp_path / "lib"), "--classes", "contrabass", "--velocities",
            "80", "--jobs", "2", "-q"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[1].strip().startswith("20 silent notes not written: contrabass 20 (listed in ")
    assert main([*args, "--verbose"]) == 0
    listed = [ln.strip() for ln in capsys.readouterr().out.splitlines()[2:]]
    assert sorted(listed) == [r["path"] for r in _rows(tmp_path / "lib" / "silent.csv")]
    assert len(listed) == 20


SF3 = Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")


@needs_fluidsynth
@pytest.mark.skipif(not SF3.is_file(), reason="musescore-general-soundfont-small is missing")
def test_an_sf3_soundfont_renders():
    assert demo.bank_name(SF3) == "MuseScore_General_Lite"
    y = demo.render_note(demo.Note("violin", 40, 69, 80, "short", 0.4), soundfont=SF3)
    assert np.abs(y).max() > 0.01


def test_the_synth_set_needs_no_fluidsynth_and_writes_flac_as_wav(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    wav = demo.render_library(tmp_path / "wav", sound_set="synth", synth_count=3, synth_seed=4,
                              n_jobs=1)
    flac = demo.render_library(tmp_path / "flac", sound_set="synth", synth_count=3,
                               synth_seed=4, audio_format="flac", n_jobs=1)
    assert wav.n_files_written == flac.n_files_written == 3
    rows = _rows(tmp_path / "flac" / "metadata.csv")
    assert [r["path"].rsplit(".", 1)[1] for r in rows] == ["flac"] * 3
    assert all(r["path"].startswith("synth/procedural_s4/") for r in rows)
    for r in rows:
        a, _ = sf.read(tmp_path / "flac" / r["path"], dtype="int16")
        b, _ = sf.read(tmp_path / "wav" / r["path"].replace(".flac", ".wav"), dtype="int16")
        np.testing.assert_array_equal(a, b)


def test_a_render_worker_does_not_import_torch_and_leaves_ctrl_c_to_its_parent():
    """Each render worker imported torch (1.7 s and some 245 MB each, one worker per core)
    only to watch for its parent's end; rendering needs none of it. And a Ctrl-C printed each
    worker's traceback: the parent stops the pool."""
    import subprocess
    import sys

    code = ("import signal, sys; import soundatlas.demo.library as L; "
            "L._init_worker(None, 44100, 1); "
            "print('torch' in sys.modules, signal.getsignal(signal.SIGINT) == signal.SIG_IGN)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False True", out


@needs_fluidsynth
def test_a_soundfont_or_folder_that_cannot_be_read_or_written_is_one_line(tmp_path):
    """A SoundFont without read permission, and an OUT folder that cannot be written, ended in
    PermissionError tracebacks."""
    import os
    import subprocess
    import sys

    from conftest import where_modes_bind

    prefix = where_modes_bind()
    command = [*prefix, str(Path(sys.executable).parent / "soundatlas"), "demo-library", "-q"]
    locked = tmp_path / "locked.sf2"
    locked.write_bytes(b"RIFF\0\0\0\0sfbk")
    locked.chmod(0o000)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        for args, says in (([str(tmp_path / "out"), "--soundfont", str(locked)],
                            "cannot read the SoundFont: Permission denied"),
                           ([str(read_only), "--classes", "flute", "--velocities", "80"],
                            f"cannot write into {read_only}: Permission denied"),
                           ([str(read_only), "--set", "gm", "--classes", "flute"],
                            f"cannot write into {read_only}/gm: Permission denied")):
            out = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "CI": "1"})
            assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
            assert says in out.stderr, out.stderr
    finally:
        locked.chmod(0o644)
        read_only.chmod(0o755)
