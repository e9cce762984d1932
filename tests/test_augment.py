"""Augmentation in the CQT domain: each transform does what it says on the linear magnitudes,
draws are reproducible from the seed, and the settings round-trip through JSON and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundatlas.augment import DEFAULT_P, TRANSFORMS, Augment, AugmentDraw, shift_bins
from soundatlas.errors import ParameterError

N_BINS, C = 192, 50.0


def log_cqt(lin: np.ndarray) -> np.ndarray:
    return np.log1p(C * np.asarray(lin, np.float64)).astype(np.float32)


def linear(x: np.ndarray) -> np.ndarray:
    return np.expm1(np.asarray(x, np.float64)) / C


def draw(n: int, **values) -> AugmentDraw:
    """An AugmentDraw with identity values except the given ones (each broadcast to n)."""
    d = {"shift": np.zeros(n, np.int64), "room_rt60": np.zeros(n),
         "room_level_db": np.full(n, -np.inf), "detune": np.zeros(n), "tilt": np.zeros(n),
         "gain_db": np.zeros(n), "snr_db": np.full(n, np.inf)}
    for k, v in values.items():
        d[k] = np.broadcast_to(np.asarray(v, dtype=d[k].dtype), (n,)).copy()
    return AugmentDraw(**d)


def random_windows(n=8, window=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 3, (n, window, N_BINS)).astype(np.float32)


def tone(peak_bin: int, n=4, window=10) -> np.ndarray:
    """Windows of a steady tone: a peak at ``peak_bin`` falling off over a few bins."""
    b = np.arange(N_BINS)
    lin = 0.5 * np.exp(-0.5 * ((b - peak_bin) / 1.5) ** 2)
    return log_cqt(np.broadcast_to(lin, (n, window, N_BINS)))


# -- settings ----------------------------------------------------------------------------------


def test_settings_off_default_and_spec():
    assert not Augment().active and Augment().or_none() is None
    full = Augment.default()
    assert all(getattr(full, f"{t}_p") == DEFAULT_P[t] for t in TRANSFORMS)
    assert Augment.from_spec("none") is None and Augment.from_spec("default") == full
    a = Augment.from_spec("gain=9,noise=20:40@0.5,room=0.2:0.4,detune=1")
    assert (a.gain_p, a.gain_db) == (DEFAULT_P["gain"], 9.0)
    assert (a.noise_p, a.noise_snr_db) == (0.5, (20.0, 40.0))
    assert a.room_rt60 == (0.2, 0.4) and a.detune_semitones == 1.0
    assert a.tilt_p == a.shift_p == 0.0  # not named: off
    assert Augment.from_spec(a.spec()) == a
    assert Augment.from_spec("default,room@0") == full.with_p(room=0.0)
    # JSON round trip: what the model's config records rebuilds the same settings
    params = json.loads(json.dumps(a.get_params()))
    assert Augment(**params) == a == Augment.from_params(params)


@pytest.mark.parametrize("spec, match", [
    ("reverb", "unknown transform 'reverb'"), ("gain@1.5", "gain_p"), ("gain=-3", "gain_db"),
    ("noise=40:10", "noise_snr_db"), ("shift=1.5", "whole number"), ("gain,,tilt", "empty"),
    ("room=0:1", "room_rt60"), ("tilt=1:2", "one number"), ("gain=x", "not a number"),
])
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ParameterError, match=match):
        Augment.from_spec(spec)


def test_draws_are_reproducible_and_follow_probabilities_and_ranges():
    aug = Augment.default()
    a, b = aug.draw(np.random.default_rng(3), 20_000), aug.draw(np.random.default_rng(3), 20_000)
    for field in ("shift", "room_rt60", "room_level_db", "detune", "tilt", "gain_db", "snr_db"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.gain_db, aug.draw(np.random.default_rng(4), 20_000).gain_db)
    on = {"gain": a.gain_db != 0, "tilt": a.tilt != 0, "room": a.room_rt60 > 0,
          "noise": np.isfinite(a.snr_db), "detune": a.detune != 0}
    for name, mask in on.items():
        assert abs(mask.mean() - DEFAULT_P[name]) < 0.015, name
    # the shift is 0 a fifth of the time when drawn: P(shift != 0) = p * 4/5
    assert abs((a.shift != 0).mean() - DEFAULT_P["shift"] * 0.8) < 0.015
    assert np.abs(a.gain_db).max() <= 6 and np.abs(a.tilt).max() <= 3
    assert set(np.unique(a.shift)) == {-2, -1, 0, 1, 2}
    rt = a.room_rt60[on["room"]]
    assert rt.min() >= 0.1 and rt.max() <= 0.8
    snr = a.snr_db[on["noise"]]
    assert snr.min() >= 10 and snr.max() <= 40
    assert np.abs(a.detune).max() <= 0.5
    # nothing is drawn for a transform that is off: the generator moves only for what is on
    r1, r2 = np.random.default_rng(0), np.random.default_rng(0)
    Augment().with_p(gain=1.0).draw(r1, 10)
    r2.random(10), r2.uniform(-6, 6, 10)
    assert r1.random() == r2.random()


# -- each transform ------------------------------------------------------------------------------


def test_no_transform_leaves_the_windows_bit_identical():
    x = random_windows()
    out = Augment.apply(x, draw(len(x), shift=1), np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    assert out is not x


def test_gain_scales_linear_magnitudes_exactly():
    x = random_windows()
    gains = np.linspace(-6, 6, len(x))
    out = Augment.apply(x, draw(len(x), gain_db=gains), np.random.default_rng(0))
    ratio = linear(out) / linear(x)
    np.testing.assert_allclose(ratio, np.broadcast_to(10 ** (gains / 20)[:, None, None],
                                                      ratio.shape), rtol=2e-6)


def test_tilt_has_the_stated_slope_and_keeps_the_middle():
    x = random_windows(n=3)
    slopes = np.array([-3.0, 1.5, 3.0])
    out = Augment.apply(x, draw(3, tilt=slopes), np.random.default_rng(0))
    gain_db = 20 * np.log10(linear(out) / linear(x))  # (n, frames, bins)
    per_octave = gain_db[:, :, 24:] - gain_db[:, :, :-24]  # 24 bins = one octave
    np.testing.assert_allclose(per_octave, np.broadcast_to(slopes[:, None, None],
                                                           per_octave.shape), atol=1e-4)
    # 0 dB at the middle, (192 - 1) / 2: bins 95 and 96 lie half a bin either side of it
    np.testing.assert_allclose(gain_db[:, :, 95] + gain_db[:, :, 96], 0, atol=1e-4)


@pytest.mark.parametrize("semitones, bins", [(0.5, 1), (-0.5, -1), (1.0, 2), (-3.0, -6)])
def test_detune_moves_a_tone_peak_by_the_stated_number_of_bins(semitones, bins):
    x = tone(100)
    out = Augment.apply(x, draw(len(x), detune=semitones), np.random.default_rng(0),
                        bins_per_octave=24)
    assert np.all(np.argmax(out, axis=2) == 100 + bins)
    # a whole-bin shift is exact: the same magnitudes, moved
    np.testing.assert_allclose(linear(out)[..., 50 + bins:150 + bins], linear(x)[..., 50:150],
                               rtol=1e-5, atol=1e-9)


def test_fractional_detune_interpolates_between_bins():
    x = tone(100, n=1)
    out = Augment.apply(x, draw(1, detune=0.25), np.random.default_rng(0))  # half a bin up
    lin = linear(out)[0, 0]
    assert lin[100] == pytest.approx(lin[101], rel=1e-5)  # the peak now lies between them
    centroid = (lin * np.arange(N_BINS)).sum() / lin.sum()
    assert centroid == pytest.approx(100.5, abs=1e-3)
    edge = shift_bins(np.ones((1, 2, N_BINS), np.float32), np.array([2.5]))
    assert not edge[..., :2].any() and edge[0, 0, 2] == pytest.approx(0.5)  # silence moves in


def test_noise_is_added_at_the_drawn_snr():
    x = random_windows(n=6)
    snr = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 25.0])
    out = Augment.apply(x, draw(6, snr_db=snr), np.random.default_rng(1))
    s, o = linear(x), linear(out)
    signal = (s ** 2).mean(axis=(1, 2))
    noise = (o ** 2 - s ** 2).mean(axis=(1, 2))  # powers add
    assert np.all(o >= s - 1e-6)
    np.testing.assert_allclose(10 * np.log10(signal / noise), snr, atol=0.3)


def test_room_adds_a_decaying_tail_with_the_drawn_energy():
    """An impulse in the frame before the window: the window holds its tail, whose energy is
    room_level_db of the impulse's, decaying faster in the high bins."""
    lin = np.zeros((1, 10, N_BINS))
    before = np.zeros((1, 8, N_BINS))
    before[0, -1] = 0.2  # an impulse right before the window
    d = draw(1, room_rt60=0.3, room_level_db=-10.0)
    out = Augment.apply(log_cqt(lin), d, np.random.default_rng(0), context=log_cqt(before),
                        frame_seconds=0.05)
    tail = linear(out)[0] ** 2  # (frames, bins): power
    energy = tail.sum(axis=0) / 0.2 ** 2
    # the window holds 10 frames of the tail: all of it but (a^11)/(a) at a = 10^(-6*0.05/rt)
    assert energy[0] == pytest.approx(0.1, rel=0.01)
    assert np.all(np.diff(tail[:, 0]) < 0)  # decays
    low, high = tail[1, 0] / tail[0, 0], tail[1, -1] / tail[0, -1]
    assert low == pytest.approx(10 ** (-6 * 0.05 / 0.3), rel=1e-4)
    assert high == pytest.approx(10 ** (-6 * 0.05 / 0.15), rel=1e-4)  # half the RT60
    with pytest.raises(ParameterError, match="context"):
        Augment.apply(log_cqt(lin), d, np.random.default_rng(0))


def test_frames_outside_the_sample_stay_silent():
    x = random_windows(n=5)
    valid = np.ones((5, 10), bool)
    valid[:, 7:] = False
    x[~valid] = 0
    aug = Augment.default().with_p(room=1.0, noise=1.0, gain=1.0, tilt=1.0, detune=1.0)
    rng = np.random.default_rng(0)
    d = aug.draw(rng, 5)
    context = np.random.default_rng(1).uniform(0, 3, (len(d.room_rows), 8, N_BINS))
    out = Augment.apply(x, d, rng, valid=valid, context=context.astype(np.float32))
    assert not out[~valid].any() and np.all(out[valid] != x[valid])


def test_context_frames_cover_the_longest_tail_to_30_db():
    assert Augment().context_frames(0.05) == 0
    assert Augment(room_p=0.5, room_rt60=(0.1, 0.8)).context_frames(0.05) == 8
