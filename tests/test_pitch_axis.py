"""The measured pitch axis: a frame's height is its pitch, a pitch-axis network puts it last,
and the plane fitted beside it separates classes that the height alone does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundatlas.cqt import PAPER_CQT, cqt
from soundatlas.embed import embed_many
from soundatlas.errors import ParameterError
from soundatlas.model import build_model
from soundatlas.pitch_axis import fit_plane, frame_height, plane_start
from soundatlas.sampling import add_noise

SR = PAPER_CQT.sr


def harmonic_tone(midi: float, seconds: float = 1.0, n_harmonics: int = 5, seed: int = 0):
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * SR)) / SR
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, n_harmonics)
    y = sum(np.sin(2 * np.pi * h * f0 * t + p) / h
            for h, p in zip(range(1, n_harmonics + 1), phases) if h * f0 < SR / 2)
    return (0.2 * y).astype(np.float32)


def middle_frames(y):
    F = cqt(y, params=PAPER_CQT)
    return F[len(F) // 4: 3 * len(F) // 4]


@pytest.mark.parametrize("midi", [33, 45, 57, 60, 64, 69, 76, 88, 100])
def test_the_height_of_a_harmonic_tone_is_its_pitch_in_octaves_from_a4(midi):
    # fmin 27.5 Hz (A0), 24 bins per octave: the middle bin (96) is A4 (MIDI 69)
    h = frame_height(torch.from_numpy(middle_frames(harmonic_tone(midi))), 24).numpy()
    assert np.allclose(h, (midi - 69) / 12)


def test_a_tone_without_its_fundamental_still_sits_at_its_pitch():
    """Harmonic summation credits the missing fundamental (harmonics 2-6 present)."""
    f0, t = 220.0, np.arange(SR) / SR
    y = 0.2 * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(2, 7))
    h = frame_height(torch.from_numpy(middle_frames(y.astype(np.float32))), 24).numpy()
    assert np.median(h) == pytest.approx((57 - 69) / 12)


def test_silence_and_flat_frames_sit_at_the_middle():
    frames = torch.stack([torch.zeros(192), torch.full((192,), 1.8)])
    assert frame_height(frames, 24).tolist() == [0.0, 0.0]


def test_the_height_keeps_the_leading_shape_and_rejects_a_bad_resolution():
    x = torch.from_numpy(middle_frames(harmonic_tone(60))[:6]).reshape(2, 3, 192)
    assert frame_height(x, 24).shape == (2, 3)
    with pytest.raises(ParameterError, match="bins_per_octave"):
        frame_height(x, 0)


def pitch_axis_net(seed=0):
    torch.manual_seed(seed)
    net = build_model("paper", standardize=True, pitch_axis=True)
    net.set_input_stats(np.full(192, 1.0), np.full(192, 0.5))
    return net.eval()


def test_a_pitch_axis_network_puts_the_centre_frames_height_last_in_forward_and_embed_frames():
    net = pitch_axis_net()
    assert net.l4.out_features == 2
    F = torch.from_numpy(np.concatenate([middle_frames(harmonic_tone(m))[:8] for m in (48, 72)]))
    with torch.no_grad():
        dense = net.embed_frames(F)
        padded = torch.nn.functional.pad(F, (0, 0, 5, 4))
        windows = torch.stack([padded[t:t + 10] for t in range(len(F))])
        direct = net(windows)
    assert dense.shape == (16, 3)
    assert torch.allclose(dense, direct, atol=1e-5)
    assert torch.equal(dense[:, 2], frame_height(F, 24))
    assert dense[:8, 2].tolist() == [-21 / 12] * 8 and dense[8:, 2].tolist() == [3 / 12] * 8


def test_height_frames_give_the_height_and_leave_the_plane_alone():
    net = pitch_axis_net()
    F = torch.from_numpy(middle_frames(harmonic_tone(60))[:8])
    other = torch.from_numpy(middle_frames(harmonic_tone(84))[:8])
    with torch.no_grad():
        a = net.embed_frames(F)
        b = net.embed_frames(F, height_frames=other)
    assert torch.equal(a[:, :2], b[:, :2])
    assert torch.allclose(b[:, 2], torch.full((8,), 15 / 12))


def test_embedding_reads_the_height_from_the_frames_before_the_prediction_noise():
    net = pitch_axis_net()
    F = middle_frames(harmonic_tone(40, n_harmonics=2) * 0.001)  # under the noise floor
    clean = frame_height(torch.from_numpy(F), 24).numpy()
    assert np.all(clean == (40 - 69) / 12)
    (z,) = embed_many(net, [F], noise=(0.1, 0.01), rngs=[np.random.default_rng(1)])
    assert np.array_equal(z[:, 2], clean)
    # what the network itself sees, under the noise, would give another height
    seen = add_noise(np.pad(F, ((5, 4), (0, 0))), np.random.default_rng(1), mean=0.1, std=0.01,
                     compression=50.0)[5:-4]
    assert not np.array_equal(frame_height(torch.from_numpy(seen), 24).numpy(), clean)


def test_the_pitch_axis_is_in_the_parameters_and_survives_save_and_load(tmp_path):
    from soundatlas.artifact import ModelArtifact

    net = pitch_axis_net()
    params = net.get_params()
    assert params["pitch_axis"] is True and params["bins_per_octave"] == 24
    assert "pitch_axis" not in build_model("paper").get_params()
    ModelArtifact("pa", {"architecture": params}, net).save(tmp_path / "pa")
    back = ModelArtifact.load(tmp_path / "pa").model
    F = torch.from_numpy(middle_frames(harmonic_tone(55))[:5])
    with torch.no_grad():
        assert torch.equal(back.embed_frames(F), net.embed_frames(F))
    with pytest.raises(ParameterError, match="dims=1"):
        build_model("paper", dims=1, pitch_axis=True)


def test_fit_plane_separates_classes_the_height_confuses_and_holds_radius_one():
    """Two classes at the same heights, told apart by one hidden direction that the start
    plane ignores; fitted, the plane puts each frame's nearest neighbours in its class."""
    rng = np.random.default_rng(0)
    n = 600
    cls = rng.integers(0, 2, n)
    height = rng.integers(-2, 3, n) / 2.0
    hidden = rng.normal(0, 1, (n, 8)).astype(np.float32)
    hidden[:, 0] += 4.0 * cls  # the class direction
    start = np.zeros((2, 8))
    start[0, 1] = start[1, 2] = 1.0  # two noise directions

    def knn_agreement(w, b):
        q = np.c_[hidden @ w.T + b, height]
        d = ((q[:, None] - q[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return (cls[np.argsort(d, 1)[:, :5]] == cls[:, None]).mean()

    s = start / np.sqrt(((hidden - hidden.mean(0)) @ start.T).var(0).sum())
    before = knn_agreement(s, -(hidden.mean(0) @ s.T))
    w, b = fit_plane(hidden, height, cls, start, steps=300, batch=256, lr=0.01)
    q = hidden @ w.T + b
    assert np.allclose(q.mean(0), 0, atol=1e-4)
    assert np.sqrt((q ** 2).sum(1).mean()) == pytest.approx(1.0, rel=1e-4)
    assert before < 0.65 and knn_agreement(w, b) > 0.9
    again = fit_plane(hidden, height, cls, start, steps=300, batch=256, lr=0.01)
    assert np.array_equal(again[0], w)  # seeded: the same plane
    with pytest.raises(ParameterError, match="one row per frame"):
        fit_plane(hidden[:10], height, cls, start)


def test_plane_start_takes_the_maps_directions_once_the_height_is_regressed_out():
    """A map whose first coordinate is the height: the start plane is its other two
    coordinates, the wider one first, as maps of the hidden layer."""
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2000, 6))
    l4 = np.zeros((3, 6))
    l4[0, 0], l4[1, 1], l4[2, 2] = 1.0, 1.0, 2.0
    points = hidden @ l4.T
    start = plane_start(points, points[:, 0], l4)
    assert start.shape == (2, 6)
    cos = np.abs(start @ l4.T) / np.linalg.norm(start, axis=1)[:, None] / np.linalg.norm(l4, axis=1)
    assert cos[0, 2] > 0.99 and cos[1, 1] > 0.99
    assert cos[:, 0].max() < 0.05


def test_the_teacher_map_of_a_pitch_axis_model_reads_heights_before_the_noise():
    """adapt's default neighbourhood compares windows on the base map: its heights must be the
    ones embed gives (noise-free), or quiet and noisy sounds get neighbours at random heights."""
    from soundatlas.frames import TrainingData, windows
    from soundatlas.neighbourhoods.knn import TeacherMap

    quiet = [middle_frames(harmonic_tone(m, n_harmonics=2) * 0.001) for m in (40, 52, 64, 76)]
    data = TrainingData.from_arrays(quiet)
    teacher = TeacherMap(n_candidates=40, k=3, far=10)
    teacher.set_teacher(pitch_axis_net(), noise=(0.1, 0.01))
    teacher.fit(data)
    s = np.repeat(np.arange(4), 5)
    c = np.tile(np.arange(5, 10), 4)
    w = windows(data, s, c, window=10)
    got = teacher._represent(w)[:, 2]
    np.testing.assert_array_equal(got, frame_height(torch.from_numpy(w[:, 5]), 24).numpy())
    np.testing.assert_allclose(np.unique(got), (np.array([40, 52, 64, 76]) - 69) / 12, atol=1e-6)
