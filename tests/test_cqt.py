"""The batched CQT against the reference definition, librosa.cqt (DESIGN.md §1)."""

from __future__ import annotations

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from soundatlas.cqt import PAPER_CQT, CQTParams, cqt, cqt_batch, n_frames  # noqa: E402
from soundatlas.errors import ParameterError  # noqa: E402

SR = 16000


def reference(y: np.ndarray) -> np.ndarray:
    """|librosa.cqt| as (frames x bins), the reference definition."""
    C = librosa.cqt(y, sr=SR, hop_length=800, fmin=27.5, n_bins=192, bins_per_octave=24)
    return np.abs(C).T


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize("k", [0, 7, 24, 41, 60, 83, 96, 118, 131, 150, 167, 180, 191])
def test_tone_on_bin_centre_same_peak_within_half_db(k):
    f = PAPER_CQT.freqs[k]
    t = np.arange(int(3.0 * SR)) / SR
    y = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    ours, ref = cqt(y, compressed=False), reference(y)
    assert ours.shape == ref.shape
    middle = slice(10, -10)  # steady state, away from the edges
    assert np.all(ours[middle].argmax(axis=1) == k)
    assert np.all(ref[middle].argmax(axis=1) == k)
    db = 20 * np.log10(ours[middle, k] / ref[middle, k])
    assert np.max(np.abs(db)) < 0.5


def test_white_noise_correlates_and_frame_counts_match():
    rng = np.random.default_rng(1)
    for n in (16000, 40000, 40799, 40800, 97531):
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        ours, ref = cqt(y), np.log1p(50 * reference(y))
        assert ours.shape == ref.shape == (1 + n // 800, 192)
        assert corr(ours, ref) >= 0.995


def test_rendered_notes_correlate(rendered_library_master):
    from soundatlas import audio

    paths = sorted(rendered_library_master.rglob("*.wav"))
    chosen = paths[:: max(1, len(paths) // 12)]
    ys = [audio.load(p, sr=SR).y for p in chosen]
    for y, ours in zip(ys, cqt_batch(ys)):
        ref = np.log1p(50 * reference(y))
        assert ours.shape == ref.shape
        assert corr(ours, ref) >= 0.995


def test_batch_equals_one_by_one_for_mixed_lengths():
    rng = np.random.default_rng(2)
    ys = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (1, 799, 800, 12345, 40000, 160000)]
    batched = cqt_batch(ys)
    for y, C in zip(ys, batched):
        assert C.shape == (n_frames(len(y)), 192)
        assert C.dtype == np.float32
        np.testing.assert_allclose(C, cqt(y), rtol=1e-5, atol=1e-5)


def test_silence_is_zero_and_compression_is_log50():
    assert np.all(cqt(np.zeros(8000, np.float32)) == 0)
    y = np.random.default_rng(3).standard_normal(8000).astype(np.float32)
    np.testing.assert_allclose(cqt(y), np.log1p(50 * cqt(y, compressed=False)), rtol=1e-5)


def test_bad_parameters_are_named():
    with pytest.raises(ParameterError, match="hop_length"):
        CQTParams(hop_length=0)
    with pytest.raises(ParameterError, match="sr/2"):
        CQTParams(n_bins=240)  # 10 octaves from 27.5 Hz pass the Nyquist frequency of 16 kHz
    with pytest.raises(ParameterError, match="1-D"):
        cqt_batch([np.zeros((2, 100))])


def test_cli_cqt_writes_frames_by_bins(tmp_path):
    from conftest import write_tone
    from soundatlas.cli import main

    wav = write_tone(tmp_path / "a.wav", 440.0, seconds=1.0, sr=22050)
    out = tmp_path / "a.npy"
    assert main(["cqt", str(wav), "--output", str(out)]) == 0
    C = np.load(out)
    assert C.shape == (21, 192) and C.dtype == np.float32
    # A4 = 440 Hz is bin 24 * log2(440 / 27.5) = 96
    assert int(np.median(C[2:-2].argmax(axis=1))) == 96


def test_cli_cqt_bad_file_one_line_exit_1(tmp_path, capsys):
    from soundatlas.cli import main

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["cqt", str(bad), "--output", str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.wav" in err[0]
