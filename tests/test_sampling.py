"""Training data in memory, windows, energy-weighted centres, input noise, the triple sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError
from soundatlas.indexing import index_library
from soundatlas.neighbourhoods import Instrument, InputKNN
from soundatlas.sampling import (
    TrainingData,
    TripleSampler,
    add_noise,
    draw_centres,
    frame_energy,
    windows,
)

N_BINS = 192


def frames_with_energy(energy, *, n_bins: int = N_BINS, bin_: int = 40) -> np.ndarray:
    """Log-CQT frames whose summed linear magnitude is ``energy`` (all of it in one bin)."""
    f = np.zeros((len(energy), n_bins), dtype=np.float32)
    f[:, bin_] = np.log1p(50.0 * np.asarray(energy, dtype=np.float64))
    return f


def random_frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 3, size=(n, N_BINS)).astype(np.float32)


# -- TrainingData ------------------------------------------------------------------------------


def test_from_arrays_layout_and_energy():
    arrays = [random_frames(n, seed=n) for n in (4, 0, 7)]
    data = TrainingData.from_arrays(arrays, labels={"instrument": ["a", None, "b"]})
    assert data.n_samples == 3 and data.n_bins == N_BINS
    assert data.frames.dtype == np.float32 and data.energy.dtype == np.float64
    assert data.offsets.tolist() == [0, 4, 4] and data.lengths.tolist() == [4, 0, 7]
    assert data.sample_ids.tolist() == [0, 1, 2]
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(data.sample_frames(i), a)
    expected = (np.expm1(np.concatenate(arrays).astype(np.float64)) / 50.0).sum(axis=1)
    np.testing.assert_allclose(data.energy, expected, rtol=1e-12)
    assert data.labels["instrument"].dtype == object
    assert data.labels["instrument"].tolist() == ["a", None, "b"]


def test_subset_regathers_frames_and_labels():
    arrays = [random_frames(n, seed=n) for n in (3, 5, 2, 6)]
    data = TrainingData.from_arrays(arrays, labels={"k": ["w", "x", "y", "z"]},
                                    sample_ids=[10, 11, 12, 13])
    sub = data.subset([3, 1])
    assert sub.sample_ids.tolist() == [13, 11]
    assert sub.labels["k"].tolist() == ["z", "x"]
    np.testing.assert_array_equal(sub.sample_frames(0), arrays[3])
    np.testing.assert_array_equal(sub.sample_frames(1), arrays[1])
    # lengths 3, 5, 2, 6: sample 3 is rows 10..15, sample 1 rows 3..7
    np.testing.assert_array_equal(sub.energy, np.r_[data.energy[10:16], data.energy[3:8]])
    with pytest.raises(ParameterError):
        data.subset([4])


def test_from_arrays_rejects_bad_input():
    with pytest.raises(ParameterError):
        TrainingData.from_arrays([])
    with pytest.raises(ParameterError):
        TrainingData.from_arrays([np.zeros((3, 4)), np.zeros((3, 5))])
    with pytest.raises(ParameterError, match="label 'x'"):
        TrainingData.from_arrays([np.zeros((3, 4))], labels={"x": ["a", "b"]})


def test_from_atlas_reads_frames_and_labels_in_the_given_order(tone_library):
    index_library(tone_library, n_jobs=1)
    with Atlas.open(tone_library / ".soundatlas") as atlas:
        ids = [r.id for r in atlas.samples()][::-1]
        data = TrainingData.from_atlas(atlas, ids, label_keys=("instrument", "pitch"))
        assert data.sample_ids.tolist() == ids
        for i, sid in enumerate(ids):
            np.testing.assert_array_equal(data.sample_frames(i), atlas.features(sid))
        inst = atlas.labels("instrument")
        assert data.labels["instrument"].tolist() == [inst[i] for i in ids]
        np.testing.assert_allclose(data.energy, frame_energy(data.frames), rtol=1e-12)
        assert data.compression == 50.0

        with pytest.raises(ParameterError, match="'nope'.*available labels: .*instrument"):
            TrainingData.from_atlas(atlas, label_keys=("nope",))
        with pytest.raises(ParameterError, match="not in the atlas"):
            TrainingData.from_atlas(atlas, [max(ids) + 100])
        everything = TrainingData.from_atlas(atlas)
        assert everything.n_samples == len(ids) and everything.labels == {}


# -- windows ---------------------------------------------------------------------------------


def manual_window(frames: np.ndarray, c: int, window: int) -> np.ndarray:
    out = np.zeros((window, frames.shape[1]), dtype=np.float32)
    for j in range(window):
        r = c - window // 2 + j
        if 0 <= r < len(frames):
            out[j] = frames[r]
    return out


@pytest.mark.parametrize("window", [10, 7, 1])
def test_windows_equal_manual_slicing_with_zero_padding(window):
    arrays = [random_frames(n, seed=n) + 0.5 for n in (20, 3, 12, 0)]
    data = TrainingData.from_arrays(arrays)
    cases = [(0, c) for c in (0, 1, 4, 5, 10, 15, 19)] + [(1, c) for c in (0, 1, 2)] \
        + [(2, c) for c in (0, 6, 11)] + [(3, 0)]
    s, c = map(np.array, zip(*cases))
    got = windows(data, s, c, window=window)
    assert got.shape == (len(cases), window, N_BINS) and got.dtype == np.float32
    for row, (si, ci) in enumerate(cases):
        np.testing.assert_array_equal(got[row], manual_window(arrays[si], ci, window))
    # c-5..c+4 for 10 frames: the window centred at 0 has 5 zero frames, then frames 0..4
    if window == 10:
        assert not got[0, :5].any() and np.array_equal(got[0, 5:], arrays[0][:5])
        assert np.array_equal(got[6, :6], arrays[0][14:]) and not got[6, 6:].any()  # 14..23
    # the source frames are untouched
    np.testing.assert_array_equal(data.sample_frames(1), arrays[1])


# -- energy-weighted centres ---------------------------------------------------------------------


def test_centres_only_where_there_is_energy():
    energy = np.zeros(12)
    energy[3:6] = [1.0, 2.0, 0.5]
    data = TrainingData.from_arrays(
        [random_frames(5, 1), frames_with_energy(energy), random_frames(4, 2)])
    c = draw_centres(data, np.full(20_000, 1), np.random.default_rng(0))
    assert set(np.unique(c)) == {3, 4, 5}
    freq = np.bincount(c, minlength=12)[3:6] / len(c)
    np.testing.assert_allclose(freq, np.array([1, 2, 0.5]) / 3.5, atol=0.015)


def test_centres_follow_a_two_level_energy_profile():
    # frames 0-9 weigh 1, frames 10-19 weigh 3: P(centre >= 10) = 30 / 40 = 0.75
    profile = frames_with_energy(np.r_[np.ones(10), 3 * np.ones(10)])
    data = TrainingData.from_arrays([random_frames(7, 3), profile, profile])
    n = 40_000
    s = np.tile([1, 2], n // 2)  # two samples at different offsets in one call
    c = draw_centres(data, s, np.random.default_rng(1))
    assert c.min() >= 0 and c.max() <= 19
    for sample in (1, 2):
        high = np.mean(c[s == sample] >= 10)
        sigma = np.sqrt(0.75 * 0.25 / (n // 2))
        assert abs(high - 0.75) < 5 * sigma
    # within a level, uniform
    counts = np.bincount(c, minlength=20)
    assert counts[:10].std() / counts[:10].mean() < 0.1
    assert counts[10:].std() / counts[10:].mean() < 0.1


def test_silent_sample_gets_uniform_centres_and_empty_sample_gets_zero():
    data = TrainingData.from_arrays(
        [np.zeros((8, N_BINS)), random_frames(5, 4), np.zeros((0, N_BINS))])
    c = draw_centres(data, np.zeros(16_000, dtype=int), np.random.default_rng(2))
    counts = np.bincount(c, minlength=8)
    assert len(counts) == 8 and counts.min() > 1700
    assert draw_centres(data, [2, 2], np.random.default_rng(0)).tolist() == [0, 0]
    assert not windows(data, [2], [0]).any()


def test_centres_are_deterministic_for_a_seed():
    data = TrainingData.from_arrays([random_frames(n, n) for n in (9, 30, 2)])
    s = np.arange(3).repeat(50)
    a = draw_centres(data, s, np.random.default_rng(5))
    b = draw_centres(data, s, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert np.all(a < data.lengths[s]) and np.all(a >= 0)


# -- noise ---------------------------------------------------------------------------------------


def test_add_noise_numpy_statistics():
    x = np.zeros((200, 10, N_BINS), dtype=np.float32)
    y = add_noise(x, np.random.default_rng(0))
    assert y.dtype == np.float32 and y.shape == x.shape and not x.any()
    lin = np.expm1(y.astype(np.float64)) / 50.0
    assert abs(lin.mean() - 0.1) < 1e-3 and abs(lin.std() - 0.01) < 5e-4
    assert abs(y.mean() - np.log1p(50 * 0.1)) < 0.01  # ~1.79
    # on non-zero input the shift is in the linear domain
    x2 = np.full((100, 10, N_BINS), np.log1p(50.0 * 0.3), dtype=np.float32)
    lin2 = np.expm1(add_noise(x2, np.random.default_rng(1)).astype(np.float64)) / 50.0
    assert abs(lin2.mean() - 0.4) < 1e-3
    # negative magnitudes are clipped to zero
    assert not add_noise(x, np.random.default_rng(0), mean=-1.0).any()
    # deterministic for a seed
    np.testing.assert_array_equal(add_noise(x2, np.random.default_rng(3)),
                                  add_noise(x2, np.random.default_rng(3)))


def test_add_noise_torch_statistics_and_generator():
    x = torch.zeros(200, 10, N_BINS)
    y = add_noise(x, torch.Generator().manual_seed(0))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == x.shape
    lin = torch.expm1(y.double()) / 50.0
    assert abs(lin.mean().item() - 0.1) < 1e-3 and abs(lin.std().item() - 0.01) < 5e-4
    y2 = add_noise(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)
    assert not torch.equal(y, add_noise(x, torch.Generator().manual_seed(1)))
    assert not x.any()
    with pytest.raises(ParameterError):
        add_noise(x, np.random.default_rng(0))
    with pytest.raises(ParameterError):
        add_noise(np.zeros(3), torch.Generator())
    with pytest.raises(ParameterError):
        add_noise(np.zeros(3), std=-1.0)


# -- the sampler -------------------------------------------------------------------------------


def labelled_data(n_per_class: int = 6, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    arrays, labels = [], []
    for k, name in enumerate(["a", "b", "c"]):
        for i in range(n_per_class):
            n_frames = rng.integers(3, 30)
            arrays.append(rng.uniform(0, 2, size=(n_frames, N_BINS)).astype(np.float32) + k)
            labels.append(name)
    return TrainingData.from_arrays(arrays, labels={"instrument": labels})


def test_sampler_batches_shapes_and_determinism():
    data = labelled_data()
    s1 = TripleSampler(data, Instrument(), batch_size=8, seed=3)
    s2 = TripleSampler(data, Instrument(), batch_size=8, seed=3)
    s3 = TripleSampler(data, Instrument(), batch_size=8, seed=4)
    for _ in range(3):
        b1, b2, b3 = s1.next_batch(), s2.next_batch(), s3.next_batch()
        for t in b1:
            assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
            assert t.shape == (8, 10, N_BINS)
        assert all(torch.equal(u, v) for u, v in zip(b1, b2))
        assert not torch.equal(b1[0], b3[0])


def test_sampler_without_noise_is_windows_of_the_neighbourhood_triples():
    data = labelled_data()
    nb = Instrument().fit(data)
    sampler = TripleSampler(data, nb, batch_size=5, window=6, seed=11, noise=None)
    a, p, n = sampler.next_batch()
    t = nb.draw(np.random.default_rng(11), 5, data)
    for got, s, c in ((a, t.anchor_sample, t.anchor_centre),
                      (p, t.positive_sample, t.positive_centre),
                      (n, t.negative_sample, t.negative_centre)):
        np.testing.assert_array_equal(got.numpy(), windows(data, s, c, window=6))


@pytest.mark.parametrize("noise_rng", ["numpy", "torch"])
@pytest.mark.parametrize("make", [Instrument, lambda: InputKNN(k=2, far=5, n_candidates=300)])
def test_sampler_state_resumes_the_exact_sequence(make, noise_rng):
    data = labelled_data()
    sampler = TripleSampler(data, make(), batch_size=4, seed=7, noise_rng=noise_rng)
    for _ in range(5):
        sampler.next_batch()
    state = json.loads(json.dumps(sampler.state()))  # must survive JSON
    expected = [sampler.next_batch() for _ in range(5)]

    fresh = TripleSampler(data, make(), batch_size=4, seed=7, noise_rng=noise_rng)
    fresh.set_state(state)
    assert fresh.n_batches == 5
    for want in expected:
        got = fresh.next_batch()
        assert all(torch.equal(u, v) for u, v in zip(got, want))
    assert fresh.state() == sampler.state()


def test_sampler_refuses_a_state_from_other_settings():
    data = labelled_data()
    state = TripleSampler(data, Instrument(), batch_size=4, seed=7).state()
    with pytest.raises(ParameterError, match="batch_size"):
        TripleSampler(data, Instrument(), batch_size=8, seed=7).set_state(state)
    with pytest.raises(ParameterError, match="seed"):
        TripleSampler(data, Instrument(), batch_size=4, seed=8).set_state(state)
    with pytest.raises(ParameterError, match="noise_rng"):
        TripleSampler(data, Instrument(), batch_size=4, seed=7, noise_rng="torch").set_state(state)
    # a saved state without noise_rng was made with numpy noise
    del state["noise_rng"]
    TripleSampler(data, Instrument(), batch_size=4, seed=7).set_state(state)
    with pytest.raises(ParameterError, match="noise_rng"):
        TripleSampler(data, Instrument(), batch_size=4, seed=7, noise_rng="torch").set_state(state)
    # a state saved before the window length had its own name calls it n_frames
    state["n_frames"] = state.pop("window")
    TripleSampler(data, Instrument(), batch_size=4, seed=7).set_state(state)
    with pytest.raises(ParameterError, match="window"):
        TripleSampler(data, Instrument(), batch_size=4, seed=7, window=12).set_state(state)


def test_torch_noise_has_the_reference_distribution():
    """noise_rng='torch' changes where the noise comes from, not its distribution."""
    data = TrainingData.from_arrays([np.zeros((40, N_BINS), np.float32)] * 6,
                                    labels={"instrument": list("aabbcc")})
    fast = TripleSampler(data, Instrument(), batch_size=16, seed=5, noise_rng="torch")
    ref = TripleSampler(data, Instrument(), batch_size=16, seed=5)
    again = TripleSampler(data, Instrument(), batch_size=16, seed=5, noise_rng="torch")
    noise = {"torch": [], "numpy": []}
    for _ in range(20):
        f, r, g = fast.next_batch(), ref.next_batch(), again.next_batch()
        assert all(torch.equal(u, v) for u, v in zip(f, g))  # deterministic for a seed
        assert not torch.equal(f[0], r[0])  # other noise values
        # silent input: what is left is the noise itself, on the linear magnitudes
        noise["torch"].append(np.expm1(torch.cat(f).numpy().astype(np.float64)) / 50)
        noise["numpy"].append(np.expm1(torch.cat(r).numpy().astype(np.float64)) / 50)
    for values in noise.values():
        v = np.concatenate(values).ravel()
        assert abs(v.mean() - 0.1) < 2e-4 and abs(v.std() - 0.01) < 2e-4


def test_sampler_rejects_bad_parameters():
    data = labelled_data()
    with pytest.raises(ParameterError):
        TripleSampler(data, Instrument(), batch_size=0)
    with pytest.raises(ParameterError):
        TripleSampler(data, Instrument(), window=0)
    with pytest.raises(ParameterError):
        TripleSampler(data, Instrument(), noise=(0.1, -1.0))
    with pytest.raises(ParameterError, match="noise_rng"):
        TripleSampler(data, Instrument(), noise_rng="cupy")


# -- augmentation in the sampler ---------------------------------------------------------------


@pytest.mark.parametrize("noise_rng", ["numpy", "torch"])
def test_sampler_without_augmentation_draws_what_it_always_drew(noise_rng):
    """Off (None, or an Augment with nothing on) is bit-identical to the plain path: the
    neighbourhood's draw, the windows, the noise, from one generator in that order."""
    from soundatlas.augment import Augment

    data = labelled_data()
    for augment in (None, Augment()):
        sampler = TripleSampler(data, Instrument(), batch_size=6, seed=2, augment=augment,
                                noise_rng=noise_rng)
        assert sampler.augment is None
        nb = Instrument().fit(data)
        rng = np.random.default_rng(2)
        for _ in range(3):
            got = sampler.draw_arrays()
            t = nb.draw(rng, 6, data)
            x = windows(data, t.samples.T.reshape(-1), t.centres.T.reshape(-1))
            if noise_rng == "torch":
                gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
                x = add_noise(torch.from_numpy(x), gen).numpy()
            else:
                x = add_noise(x, rng)
            np.testing.assert_array_equal(np.concatenate(got), x)


def test_augmented_batches_are_reproducible_resumable_and_change_the_windows():
    from soundatlas.augment import Augment

    data = labelled_data()
    aug = Augment.default()

    def make():
        return TripleSampler(data, Instrument(), batch_size=8, seed=4, augment=aug,
                             noise_rng="torch")

    a, b = make(), make()
    plain = TripleSampler(data, Instrument(), batch_size=8, seed=4, noise_rng="torch")
    for _ in range(3):
        x, y = a.next_batch(), b.next_batch()
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    assert not torch.equal(a.next_batch()[0], plain.next_batch()[0])
    state = json.loads(json.dumps(a.state()))
    assert state["augment"] == aug.get_params()
    expected = [a.next_batch() for _ in range(3)]
    fresh = make()
    fresh.set_state(state)
    for want in expected:
        assert all(torch.equal(u, v) for u, v in zip(fresh.next_batch(), want))
    with pytest.raises(ParameterError, match="augment"):
        TripleSampler(data, Instrument(), batch_size=8, seed=4, noise_rng="torch").set_state(state)


def test_onset_shift_moves_the_window_within_the_sample():
    from soundatlas.augment import Augment

    data = labelled_data()
    nb = Instrument().fit(data)
    sampler = TripleSampler(data, nb, batch_size=64, seed=1, noise=None,
                            augment=Augment(shift_p=1.0, shift_frames=2))
    x = np.concatenate(sampler.draw_arrays())
    rng = np.random.default_rng(1)  # the sampler's draws: triples, the mask (all on), shifts
    t = nb.draw(rng, 64, data)
    s, c = t.samples.T.reshape(-1), t.centres.T.reshape(-1)
    rng.random(len(s))
    shift = rng.integers(-2, 3, size=len(s))
    moved = np.clip(c + shift, 0, data.lengths[s] - 1)
    np.testing.assert_array_equal(x, windows(data, s, moved))
    assert np.any(moved != c)


def test_augment_pair_windows_are_one_window_under_two_augmentations():
    """Gain only, no noise: the anchor and positive windows are the same window of the same
    sample, scaled by two different gains."""
    from soundatlas.augment import Augment
    from soundatlas.neighbourhoods import AugmentPair

    data = labelled_data()
    nb = AugmentPair(augment=Augment(gain_p=1.0, gain_db=6.0))
    sampler = TripleSampler(data, nb, batch_size=16, seed=0, noise=None)
    a, p, _ = (v.astype(np.float64) for v in sampler.draw_arrays())
    for row in range(16):
        sound = np.expm1(p[row]) > 1e-3
        r = np.expm1(a[row][sound]) / np.expm1(p[row][sound])
        assert np.ptp(r) < 1e-4 * r.mean()  # one factor for the whole window
        assert abs(20 * np.log10(r.mean())) <= 12 and abs(r.mean() - 1) > 1e-6


def test_centres_are_the_windows_middle_frames_before_the_noise_and_change_no_draw():
    """What a pitch-axis model reads its height from in training: each window's centre frame
    as ``embed`` reads it, without the input noise; asking for them draws the same batch."""
    data = labelled_data()
    nb = Instrument().fit(data)
    plain = TripleSampler(data, nb, batch_size=5, seed=11)
    with_c = TripleSampler(data, nb, batch_size=5, seed=11)
    a, p, n = plain.draw_arrays()
    a2, p2, n2, centres = with_c.draw_arrays(with_centres=True)
    assert all(np.array_equal(u, v) for u, v in ((a, a2), (p, p2), (n, n2)))
    t = nb.draw(np.random.default_rng(11), 5, data)
    s_ = np.concatenate([t.anchor_sample, t.positive_sample, t.negative_sample])
    c_ = np.concatenate([t.anchor_centre, t.positive_centre, t.negative_centre])
    np.testing.assert_array_equal(centres, windows(data, s_, c_, window=10)[:, 5])
    assert np.all(np.concatenate([a, p, n])[:, 5] > centres)  # the noise raised every bin
    assert [tuple(x.shape) for x in with_c.next_batch(with_centres=True)] == \
        [(5, 10, N_BINS)] * 3 + [(15, N_BINS)]


def test_the_sounding_span_leaves_out_near_silence_at_both_ends_only():
    from soundatlas.frames import SILENCE, sounding_span

    compression = 100.0
    share = np.array([0.0, 0.01, 1.0, 0.5, 0.04, 0.06, 0.001])  # of the loudest frame
    mags = np.outer(share, np.full(8, 0.02))  # each frame's summed magnitude: 0.16 x share
    frames = np.log1p(compression * mags)
    assert SILENCE == 0.05
    # a quiet frame between sounding ones (0.04) stays: the span is from first to last
    assert sounding_span(frames, compression=compression) == (2, 5)
    assert sounding_span(frames, compression=compression, silence=0.005) == (1, 5)
    assert sounding_span(frames, compression=compression, silence=0.4) == (2, 3)
    assert sounding_span(np.zeros((4, 8)), compression=compression) == (0, 3)  # all silence
    with pytest.raises(ParameterError, match="at least one frame"):
        sounding_span(np.zeros((0, 8)), compression=compression)
