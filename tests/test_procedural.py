"""Tests of soundatlas.procedural: the seeded synthesiser of labelled one-shots."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from soundatlas import demo, procedural
from soundatlas.errors import ParameterError

N = 2 * len(procedural.PATCHES)


def _digest(y: np.ndarray) -> str:
    return hashlib.sha256(y.tobytes()).hexdigest()


def test_a_seed_and_index_give_the_same_bytes_every_time():
    for index in (0, 7, 23, 31, 1_000_003):
        y1, labels1 = procedural.generate(5, index)
        y2, labels2 = procedural.generate(5, index)
        assert y1.dtype == np.float32 and y1.ndim == 1
        assert y1.tobytes() == y2.tobytes() and labels1 == labels2


def test_indices_and_seeds_give_distinct_sounds():
    digests = {_digest(procedural.generate(0, i)[0]) for i in range(N)}
    assert len(digests) == N
    other_seed = {_digest(procedural.generate(1, i)[0]) for i in range(N)}
    assert not digests & other_seed
    # the same patch at two indices differs too
    a, b = procedural.generate(0, 3)[0], procedural.generate(0, 3 + len(procedural.PATCHES))[0]
    assert procedural.patch_of(3) == procedural.patch_of(3 + len(procedural.PATCHES))
    assert _digest(a) != _digest(b)


def test_patches_cycle_through_every_type():
    assert [procedural.patch_of(i) for i in range(len(procedural.PATCHES))] == list(
        procedural.PATCHES
    )
    assert len(procedural.MELODIC_PATCHES) == len(procedural.OSCILLATORS) * len(
        procedural.ENVELOPES
    ) == 20
    assert {p.split("_")[0] for p in procedural.MELODIC_PATCHES} == {
        "sine", "saw", "square", "triangle", "fm",
    }  # fmt: skip


def test_labels_of_melodic_and_drum_sounds():
    for index in range(N):
        sound = procedural.describe(0, index)
        labels = sound.labels
        assert labels["bank"] == "procedural" and labels["velocity"] in {"40", "80", "120"}
        assert all(isinstance(v, str) and v for v in labels.values())
        if sound.is_drum:
            assert set(labels) == {"drum", "drum_class", "kit", "velocity", "bank"}
            assert labels["drum_class"] in demo.DRUM_CLASS_NAMES
        else:
            oscillator, envelope = sound.patch.split("_")
            assert labels["instrument"] == sound.patch
            assert labels["oscillator"] == oscillator and labels["envelope"] == envelope
            assert labels["family"] == procedural.ENVELOPE_FAMILY[envelope]
            assert labels["filter"] in procedural.FILTERS
            assert 36 <= int(labels["pitch"]) <= 96
        assert procedural.generate(0, index)[1] == labels


def test_drum_labels_agree_with_the_soundfont_kits():
    """A procedural kick is a kick as a kit's bass drum is: same drum name, same drum_class."""
    by_name = {name: key for key, name in demo.GM_PERCUSSION.items()}
    for patch, (drum, drum_class) in procedural.DRUM_PATCHES.items():
        if drum in by_name:
            assert demo.drum_class(by_name[drum]) == drum_class, patch
        else:
            assert drum_class == "effect", patch


def test_level_follows_velocity_and_the_end_fades_out():
    for index in range(N):
        sound = procedural.describe(2, index)
        y = procedural.synthesise(sound)
        assert np.isfinite(y).all()
        level = 0.25 + 0.6 * sound.velocity / 127
        assert np.abs(y).max() == pytest.approx(level, rel=1e-3)
        assert abs(y[-1]) < 0.01 * level


def _centroid(y: np.ndarray, sr: int) -> float:
    """Power-weighted mean frequency."""
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    return float((spectrum * freqs).sum() / spectrum.sum())


def _first_index(patch: str) -> int:
    return procedural.PATCHES.index(patch)


def test_drums_sound_like_their_class():
    sr = procedural.SAMPLE_RATE
    step = len(procedural.PATCHES)
    for k in range(5):
        kick = procedural.generate(0, _first_index("kick") + k * step)[0]
        hat = procedural.generate(0, _first_index("closed_hat") + k * step)[0]
        crash = procedural.generate(0, _first_index("crash") + k * step)[0]
        assert _centroid(kick, sr) < 400 < 4000 < _centroid(hat, sr)
        assert 0.02 <= len(hat) / sr < 0.2  # a short hat is a file of its own length
        assert len(crash) > len(hat) * 5


def test_melodic_pitch_is_the_labelled_midi_note():
    sr = procedural.SAMPLE_RATE
    for index in range(0, 4 * len(procedural.PATCHES)):
        sound = procedural.describe(0, index)
        if sound.patch not in ("sine_lead", "sine_pad", "triangle_lead"):
            continue
        if sound.params["filter"] == "highpass":  # the fundamental may be filtered away
            continue
        y = procedural.synthesise(sound)
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        peak_hz = np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)]
        expected = 440.0 * 2 ** ((sound.pitch - 69) / 12)
        assert abs(12 * np.log2(peak_hz / expected)) < 0.5, (index, peak_hz, expected)


def test_fm_notes_have_nothing_below_the_labelled_note():
    """A note is periodic at its labelled pitch: no FM patch puts energy below it (a half
    ratio put sidebands at half the carrier, so the note sounded an octave below its label)."""
    sr = procedural.SAMPLE_RATE
    below, index = [], 0
    while len(below) < 40:
        sound = procedural.describe(0, index)
        index += 1
        if (not sound.patch.startswith("fm_") or sound.params["filter"] != "none"
                or sound.params["noise"]):
            continue  # a filter or the noise layer would colour the test
        y = procedural.synthesise(sound)
        power = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
        hz = np.fft.rfftfreq(len(y), 1 / sr)
        expected = 440.0 * 2 ** ((sound.pitch - 69) / 12)
        below.append(power[(hz > 20) & (hz < 0.75 * expected)].sum() / power.sum())
    assert max(below) < 0.002, sorted(below)[-5:]


def test_other_sample_rates():
    y, _ = procedural.generate(0, 1, sample_rate=16000)
    y44, _ = procedural.generate(0, 1)
    assert abs(len(y) / 16000 - len(y44) / 44100) < 0.01


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: procedural.generate(-1, 0), "seed=-1"),
        (lambda: procedural.generate(0, -3), "index=-3"),
        (lambda: procedural.generate(0, 1.5), "index=1.5"),
        (lambda: procedural.generate(0, 0, sample_rate=100), "sample_rate=100"),
    ],
)
def test_bad_parameters_are_named(call, needle):
    with pytest.raises(ParameterError, match=needle):
        call()


def test_file_names_hold_patch_and_index():
    sound = procedural.describe(0, 1_234_567)
    assert sound.file_name("flac") == f"{sound.patch}/{sound.patch}_1234567.flac"
