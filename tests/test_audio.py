"""soundatlas.audio: every format to mono float32 at 16 kHz; every bad file to an AudioReadError."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from badfiles import LONG_SECONDS, TONE_HZ, TONE_SECONDS, TONES, make_bad_corpus, tone
from soundatlas.audio import AUDIO_EXTENSIONS, Audio, load, load_many
from soundatlas.errors import AudioReadError, ParameterError

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_bad_corpus(root)


def peak_hz(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin (Hann window, 8x zero padding)."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)), n=8 * len(y)))
    return float(np.argmax(spectrum) * sr / (8 * len(y)))


def rms_db(y: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))))


def middle(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """The steady part of a 1 s tone: 0.2 to 0.8 s (away from codec and resampler edges)."""
    return y[int(0.2 * sr):int(0.8 * sr)]


def write(path: Path, y: np.ndarray, sr: int, **options) -> Path:
    sf.write(path, y, sr, **options)
    return path


def assert_valid(a: Audio) -> None:
    assert a.sr == SR
    assert a.y.dtype == np.float32 and a.y.ndim == 1 and a.y.flags.c_contiguous
    assert a.duration == len(a.y) / SR
    assert np.isfinite(a.y).all()


# --- good audio ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", sorted(TONES))
def test_every_format_decodes_to_16k_mono_with_its_tone(corpus, rel):
    root, _ = corpus
    spec = TONES[rel]
    a = load(root / rel)
    assert_valid(a)
    assert (a.orig_sr, a.n_channels, a.truncated) == (spec.sr, spec.n_channels, False)
    assert abs(len(a.y) - TONE_SECONDS * SR) <= 1          # lossy codecs: gapless, +-1 frame
    assert a.file_duration == pytest.approx(TONE_SECONDS, abs=1 / spec.sr)
    assert peak_hz(middle(a.y), SR) == pytest.approx(TONE_HZ, abs=3)
    expected_db = rms_db(np.full(1, spec.amplitude / math.sqrt(2)))
    assert rms_db(middle(a.y)) == pytest.approx(expected_db, abs=0.5 if spec.lossy else 0.1)


def test_stereo_is_averaged(tmp_path):
    left, right = tone(SR)[:, 0], -0.2 * tone(SR)[:, 0] + 0.1
    path = write(tmp_path / "stereo.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
    a = load(path)
    assert a.n_channels == 2
    np.testing.assert_allclose(a.y, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000, 96000])
def test_resampling_preserves_a_mid_band_tone(tmp_path, orig_sr):
    t = np.arange(orig_sr) / orig_sr
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    a = load(write(tmp_path / f"{orig_sr}.wav", y, orig_sr, subtype="FLOAT"))
    assert_valid(a)
    assert len(a.y) == SR
    assert rms_db(middle(a.y)) == pytest.approx(rms_db(middle(y, orig_sr)), abs=0.5)
    assert peak_hz(middle(a.y), SR) == pytest.approx(1000, abs=2)


def test_no_resampling_at_16k_is_bit_exact(tmp_path):
    y = tone(SR)[:, 0]
    a = load(write(tmp_path / "t.wav", y, SR, subtype="FLOAT"))
    np.testing.assert_array_equal(a.y, y)


def test_silence_is_valid_audio(corpus):
    root, _ = corpus
    a = load(root / "silence.wav")
    assert_valid(a)
    assert len(a.y) == SR and not a.y.any()


def test_other_sample_rate_out(corpus):
    root, _ = corpus
    a = load(root / "formats/tone_pcm16_44100.wav", sr=22050)
    assert (a.sr, len(a.y)) == (22050, 22050)
    assert peak_hz(middle(a.y, 22050), 22050) == pytest.approx(TONE_HZ, abs=3)


def test_non_utf8_file_name(tmp_path):
    if sys.platform == "win32":
        pytest.skip("POSIX byte file names")
    name = b"caf\xe9 latin-1.wav"  # Latin-1, not UTF-8: a surrogate escape once decoded
    sf.write(os.fsencode(tmp_path) + b"/" + name, tone(SR), SR)  # soundfile can't take that str
    assert len(load(tmp_path / os.fsdecode(name)).y) == SR


# --- duration limits ----------------------------------------------------------------------------

def test_long_file_is_truncated_to_max_duration(corpus):
    root, _ = corpus
    path = root / "long_10min_8k.wav"
    a = load(path)
    assert_valid(a)
    assert (a.truncated, a.duration, len(a.y)) == (True, 30.0, 30 * SR)
    assert a.file_duration == LONG_SECONDS
    short = load(path, max_duration=5.0)
    assert (short.truncated, short.duration) == (True, 5.0)
    full = load(path, max_duration=None)
    assert (full.truncated, full.duration) == (False, LONG_SECONDS)
    assert full.file_duration == LONG_SECONDS


def test_reads_only_the_first_max_duration_seconds(corpus, monkeypatch):
    root, _ = corpus
    read, frames = sf.SoundFile.read, []

    def counting_read(self, *args, **kwargs):
        out = read(self, *args, **kwargs)
        frames.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    load(root / "long_10min_8k.wav", max_duration=2.0)
    assert sum(frames) <= 2 * 8000 + 1   # one frame past the limit tells "truncated"


def test_file_exactly_max_duration_long_is_not_truncated(corpus):
    root, _ = corpus
    a = load(root / "formats/tone_pcm16_44100.wav", max_duration=1.0)
    assert (a.truncated, a.duration, a.file_duration) == (False, 1.0, 1.0)


def test_truncated_data_decodes_what_is_there(corpus):
    root, _ = corpus
    a = load(root / "truncated_data.wav")
    assert (a.duration, a.file_duration, a.truncated) == (0.5, 0.5, False)


def test_min_duration(tmp_path):
    path = write(tmp_path / "short.wav", tone(SR, seconds=0.03), SR)
    with pytest.raises(AudioReadError, match="too short") as info:
        load(path, min_duration=0.05)
    assert "0.03 s" in info.value.reason and "min_duration=0.05" in info.value.reason
    assert load(path, min_duration=0.01).duration == 0.03
    assert load(path).duration == 0.03  # a 30 ms hat is a sample


@pytest.mark.parametrize("ms", [5, 10, 17, 45])
def test_clicks_from_5_ms_up_are_read_at_any_rate(tmp_path, ms):
    for sr in (44100, 48000, 22050, 16000):
        n = int(sr * ms / 1000)  # rounded down: a "5 ms" file may hold a little less
        path = write(tmp_path / f"click_{sr}.wav", tone(sr, seconds=n / sr), sr)
        a = load(path)
        assert a.duration == pytest.approx(ms / 1000, abs=1e-3) and len(a.y) > 0
    tiny = write(tmp_path / "tiny.wav", tone(44100, seconds=0.001), 44100)
    with pytest.raises(AudioReadError, match=r"too short: .*below min_duration=0\.002 s"):
        load(tiny)
    one = write(tmp_path / "one.wav", np.array([0.5]), 44100)
    with pytest.raises(AudioReadError, match="too short"):  # 1 frame at 44.1 kHz: 0 frames at 16
        load(one, min_duration=0)


# --- bad input ----------------------------------------------------------------------------------

def test_every_bad_file_of_the_corpus_fails_with_its_keyword(corpus):
    root, expect = corpus
    wrong = []
    for rel, expectation in expect.items():
        path = root / rel
        try:
            a = load(path)
            outcome = "ok"
        except AudioReadError as exc:
            assert exc.path == os.fspath(path)
            outcome, reason = "fail", exc.reason
        if expectation == "ok":
            if outcome != "ok":
                wrong.append(f"{rel}: expected ok, got {reason!r}")
            else:
                assert_valid(a)
        elif expectation.startswith("fail:"):
            keyword = expectation.removeprefix("fail:")
            if outcome == "ok" or keyword not in reason.lower():
                wrong.append(f"{rel}: expected {keyword!r} in reason, got "
                             f"{'ok' if outcome == 'ok' else repr(reason)}")
    assert not wrong, "\n".join(wrong)


def test_corpus_expectations_agree_with_audio_extensions(corpus):
    root, expect = corpus
    for rel, expectation in expect.items():
        is_candidate = Path(rel).suffix.lower() in AUDIO_EXTENSIONS and not (root / rel).is_dir()
        assert is_candidate == (expectation != "skip"), rel
    assert {"ok", "skip"} <= set(expect.values())
    assert {"fail:empty", "fail:not audio", "fail:corrupt", "fail:non-finite", "fail:too short",
            "fail:symlink loop"} <= set(expect.values())


@pytest.mark.parametrize("name", ["nan.wav", "inf.wav"])
def test_non_finite_reason_says_where(corpus, name):
    root, _ = corpus
    with pytest.raises(AudioReadError, match=r"non-finite samples \(NaN or inf\) at 0\.500 s"):
        load(root / name)


def test_directories_and_missing_files(tmp_path):
    cases = {tmp_path: "is a directory", tmp_path / "missing.wav": "does not exist",
             tmp_path / "missing" / "x.wav": "does not exist"}
    for path, keyword in cases.items():
        with pytest.raises(AudioReadError, match=keyword) as info:
            load(path)
        assert info.value.path == os.fspath(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_fails_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioReadError, match="not a regular file"):
        load(tmp_path / "pipe.wav")


def test_no_read_permission(tmp_path):
    path = write(tmp_path / "locked.wav", tone(SR), SR)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("chmod 000 does not stop this user (root); the corpus covers root via sysfs")
    with pytest.raises(AudioReadError, match="permission denied"):
        load(path)


def test_lying_header_costs_nothing(tmp_path):
    """A WAV header claiming 4 GB of 1024-channel audio, with 64 bytes of it there."""
    data = bytearray(write(tmp_path / "ok.wav", tone(SR)[:16], SR).read_bytes())
    data[22:24] = (1024).to_bytes(2, "little")            # channels
    data[32:34] = (2 * 1024).to_bytes(2, "little")        # block align
    data[40:44] = (0xFFFFFFF0).to_bytes(4, "little")      # data chunk size
    path = tmp_path / "liar.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(AudioReadError, match="too short|corrupt"):
        load(path)


@pytest.mark.parametrize("exc, keyword", [(MemoryError(), "memory"),
                                          (RuntimeError("boom"), "boom"),
                                          (ValueError("bad"), "bad"),
                                          (OSError(5, "Input/output error"), "i/o error")])
def test_no_raw_exception_escapes(corpus, monkeypatch, exc, keyword):
    root, _ = corpus

    def failing_read(self, *args, **kwargs):
        raise exc

    monkeypatch.setattr(sf.SoundFile, "read", failing_read)
    with pytest.raises(AudioReadError) as info:
        load(root / "formats/tone_pcm16_44100.wav")
    assert keyword in info.value.reason.lower()


def test_load_many_returns_errors_as_values(corpus):
    root, _ = corpus
    paths = [root / "silence.wav", root / "empty.wav", root / "nope.wav", root / "nan.wav"]
    out = load_many(paths)
    assert [type(x) for x in out] == [Audio, AudioReadError, AudioReadError, AudioReadError]
    assert [x.path for x in out[1:]] == [os.fspath(p) for p in paths[1:]]
    assert load_many([]) == []
    assert load_many(iter([root / "loops/tone.wav"]), max_duration=0.5)[0].duration == 0.5


# --- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"sr": 0}, "sr="), ({"sr": -16000}, "sr="), ({"sr": 16000.5}, "sr="), ({"sr": True}, "sr="),
    ({"max_duration": 0}, "max_duration="), ({"max_duration": -1.0}, "max_duration="),
    ({"max_duration": math.nan}, "max_duration="), ({"max_duration": "30"}, "max_duration="),
    ({"min_duration": -0.1}, "min_duration="), ({"min_duration": math.inf}, "min_duration="),
    ({"min_duration": math.nan}, "min_duration="),
    ({"min_duration": 2.0, "max_duration": 1.0}, "min_duration="),
])
def test_bad_parameters_raise_parameter_error(corpus, kwargs, name):
    root, _ = corpus
    with pytest.raises(ParameterError, match=name):
        load(root / "silence.wav", **kwargs)
    with pytest.raises(ParameterError, match=name):
        load_many([], **kwargs)


def test_bad_path_type_is_a_parameter_error():
    with pytest.raises(ParameterError, match="path="):
        load(None)


def test_infinite_max_duration_means_no_limit(corpus):
    root, _ = corpus
    a = load(root / "long_10min_8k.wav", max_duration=math.inf)
    assert (a.truncated, a.duration) == (False, LONG_SECONDS)


def test_audio_extensions():
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)
    assert {".wav", ".wave", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus", ".mp3",
            ".au", ".snd", ".caf", ".w64", ".rf64"} <= AUDIO_EXTENSIONS
