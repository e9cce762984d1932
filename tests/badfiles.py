"""A corpus of awkward and broken inputs, shared by the decoder's and the atlas's tests.

``make_bad_corpus(root)`` writes it under ``root``; returns ``{relative posix path: expectation}``:

- ``"ok"``: must decode (and be indexed) correctly;
- ``"fail:<keyword>"``: must be recorded as failed, with ``keyword`` in its (lower-case) reason;
  the keywords are those of ``soundatlas.audio``'s reasons;
- ``"skip"``: not an audio candidate (a directory, a non-audio extension): neither indexed nor
  failed.
  A directory named ``x.wav`` is recursed into; ``loops/parent`` is a symlink to its own directory.

Also ``TONES``: the files that hold a known tone (``TONE_HZ`` for ``TONE_SECONDS``), with the sample
rate, channels and gains they were written with. A plain module (no package-relative imports), so
tests import it as ``from badfiles import make_bad_corpus``. Takes ~0.15 s and ~14 MB on disk
(9.6 MB of it the long file).
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

TONE_HZ = 440.0
TONE_SECONDS = 1.0
TONE_AMPLITUDE = 0.5
LONG_SECONDS = 600            # the long file: 10 minutes of 8 kHz 16-bit noise
LONG_SR = 8000


@dataclass(frozen=True)
class Tone:
    """How a tone file was written: rate, per-channel gains (len = channels), soundfile options."""

    sr: int
    gains: tuple[float, ...] = (1.0,)
    lossy: bool = False
    options: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.gains)

    @property
    def amplitude(self) -> float:
        """Peak amplitude of the mono mix (mean of channels)."""
        return TONE_AMPLITUDE * float(np.mean(self.gains))


_STEREO = (1.0, 0.5)  # stereo tones: right channel at half gain, same phase -> mono = 0.75 x

TONES: dict[str, Tone] = {
    "formats/tone_pcm16_16000.wav": Tone(16000, options={"subtype": "PCM_16"}),
    "formats/tone_pcm16_44100.wav": Tone(44100, options={"subtype": "PCM_16"}),
    "formats/tone_pcm24_96000_stereo.wav": Tone(96000, _STEREO, options={"subtype": "PCM_24"}),
    "formats/tone_pcm32_48000.wav": Tone(48000, options={"subtype": "PCM_32"}),
    "formats/tone_float32_22050.wav": Tone(22050, options={"subtype": "FLOAT"}),
    "formats/tone_44100_stereo.aiff": Tone(44100, _STEREO, options={"subtype": "PCM_16"}),
    "formats/tone_pcm24_48000.flac": Tone(48000, options={"subtype": "PCM_24"}),
    "formats/tone_8000.au": Tone(8000, options={"subtype": "PCM_16"}),
    "formats/tone_32000.caf": Tone(32000, options={"subtype": "PCM_16"}),
    "formats/tone_44100.w64": Tone(44100, options={"subtype": "PCM_16"}),
    "formats/tone_vorbis_44100_stereo.ogg": Tone(44100, _STEREO, lossy=True),
    "formats/tone_opus_48000.opus": Tone(48000, lossy=True,
                                         options={"format": "OGG", "subtype": "OPUS"}),
    "formats/tone_mp3_44100_stereo.mp3": Tone(44100, _STEREO, lossy=True),
    "formats/tone_mp3_22050.mp3": Tone(22050, lossy=True),
}


def tone(sr: int, gains: tuple[float, ...] = (1.0,), seconds: float = TONE_SECONDS) -> np.ndarray:
    """The test tone: TONE_HZ sine at TONE_AMPLITUDE x gain per channel; (frames, channels)."""
    t = np.arange(round(seconds * sr)) / sr
    y = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([g * y for g in gains], axis=1).astype(np.float32)


def make_bad_corpus(root: Path, *, sysfs: bool = True) -> dict[str, str]:
    """Write the corpus under ``root`` (created if needed; rerunning overwrites) -> expectations.

    ``sysfs=False`` leaves out the one entry that points outside ``root``
    (see _unreadable_for_root).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}
    for rel, spec in TONES.items():
        _write(root / rel, tone(spec.sr, spec.gains), spec.sr, **spec.options)
        expect[rel] = "ok"
    expect.update(_broken_files(root))
    expect.update(_odd_but_fine_files(root))
    expect.update(_odd_names(root))
    expect.update(_odd_paths(root))
    expect.update(_permissions(root, sysfs=sysfs))
    return dict(sorted(expect.items()))


def _broken_files(root: Path) -> dict[str, str]:
    """Files that must fail, each with its reason's keyword."""
    _path(root / "empty.wav").write_bytes(b"")
    _path(root / "truncated_header.wav").write_bytes(_wav_bytes(root)[:20])
    _path(root / "not_audio.wav").write_text("This is a text file, not a RIFF file.\n" * 20)
    _path(root / "not_audio.mp3").write_text("Neither is this an MPEG stream.\n" * 20)
    _write(root / "nan.wav", _with(np.nan), 16000, subtype="FLOAT")
    _write(root / "inf.wav", _with(np.inf), 16000, subtype="FLOAT")
    # finite, but 1e30 overflows the CQT's sums: NaN features, nonsense neighbours
    _write(root / "huge.wav", np.full(16000, 1e30, np.float32), 16000, subtype="FLOAT")
    _write(root / "one_sample.wav", np.array([0.5], np.float32), 16000, subtype="PCM_16")
    _write(root / "header_only.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    return {
        "empty.wav": "fail:empty",
        "truncated_header.wav": "fail:corrupt",    # libsndfile: Malformed 'fmt ' chunk
        "not_audio.wav": "fail:not audio",         # libsndfile: Format not recognised
        "not_audio.mp3": "fail:not audio",         # libsndfile blames the file, not the format
        "nan.wav": "fail:non-finite",
        "inf.wav": "fail:non-finite",
        "huge.wav": "fail:more than 1e+06 times full scale",
        "one_sample.wav": "fail:too short",
        "header_only.wav": "fail:too short",       # a valid WAV with 0 frames
    }


def _odd_but_fine_files(root: Path) -> dict[str, str]:
    """Unusual files that are valid audio."""
    _write(root / "silence.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    _write(root / "multichannel_8ch_96k_24bit.wav", tone(96000, (1.0,) * 8), 96000,
           subtype="PCM_24")
    _write(root / "unsigned_8bit.wav", tone(22050), 22050, subtype="PCM_U8")
    _write(root / "UPPER_CASE.WAV", tone(16000), 16000, subtype="PCM_16")
    full = _wav_bytes(root)  # header says 1 s; only the first half of the data is there
    _path(root / "truncated_data.wav").write_bytes(full[:44 + len(full[44:]) // 2])
    noise = np.random.default_rng(0).integers(-8000, 8000, LONG_SECONDS * LONG_SR, np.int16)
    _write(root / "long_10min_8k.wav", noise, LONG_SR, subtype="PCM_16")
    _path(root / "readme.txt").write_text("Not an audio candidate.\n")
    return {
        "silence.wav": "ok",                       # all zeros is valid audio
        "multichannel_8ch_96k_24bit.wav": "ok",
        "unsigned_8bit.wav": "ok",
        "UPPER_CASE.WAV": "ok",                    # extensions compare lower-cased
        "truncated_data.wav": "ok",                # libsndfile reads the 0.5 s that is there
        "long_10min_8k.wav": "ok",                 # decoded truncated to max_duration
        "readme.txt": "skip",
    }


def _odd_names(root: Path) -> dict[str, str]:
    """Good files whose names have spaces, accents, CJK and emoji (NFC)."""
    names = ["name with spaces.wav", "unicode/café über.wav",
             "unicode/ピアノ 钢琴 피아노.flac", "unicode/🎹 emoji 🎻.wav", "dossier é/ü 音 🎵.ogg"]
    for rel in names:
        _write(root / rel, tone(16000), 16000)
    return {rel: "ok" for rel in names}


def _odd_paths(root: Path) -> dict[str, str]:
    """Directories named like audio, symlink loops and dangling links."""
    _write(root / "x.wav" / "inner.wav", tone(16000), 16000)
    _write(root / "loops" / "tone.wav", tone(16000), 16000)
    _symlink(".", root / "loops" / "parent")            # a directory that contains itself
    _symlink("self_loop.wav", root / "self_loop.wav")   # a file link to itself: ELOOP
    _symlink("no_such_file.wav", root / "dangling.wav")
    return {
        "x.wav": "skip",                           # a directory: recursed into, not failed
        "x.wav/inner.wav": "ok",
        "loops/tone.wav": "ok",
        "loops/parent": "skip",                    # scanners must not recurse forever
        "self_loop.wav": "fail:symlink loop",
        "dangling.wav": "fail:does not exist",
    }


def _permissions(root: Path, *, sysfs: bool) -> dict[str, str]:
    """A good file without read permission, and (as root) a file root cannot read either.

    chmod 000 stops everyone but root (CAP_DAC_OVERRIDE reads anything), and tests often run as
    root. So the expectation is probed, not assumed: "fail:permission" when opening really fails,
    else "ok" (the file is good audio). As root, _unreadable_for_root adds a real one.
    """
    path = _path(root / "no_read_permission.wav")
    _write(path, tone(16000), 16000)
    path.chmod(0)
    expect = {"no_read_permission.wav": "fail:permission" if _unreadable(path) else "ok"}
    if sysfs and expect["no_read_permission.wav"] == "ok":
        expect.update(_unreadable_for_root(root))
    return expect


def _unreadable_for_root(root: Path) -> dict[str, str]:
    """``unreadable_even_for_root.wav``: a symlink to a write-only sysfs attribute, or nothing.

    Permission bits cannot stop root, but kernfs refuses to open an attribute that has no read
    method with EACCES, whatever the capabilities. /sys/bus/<bus>/uevent is such an attribute and
    a harmless one: it is a regular file of 4096 bytes to stat(), opening it for reading fails
    with PermissionError, and a stray write of anything but a uevent action word is EINVAL.
    Left out when no such file exists here (no /sys, or it behaves differently).
    """
    link = root / "unreadable_even_for_root.wav"
    for target in sorted(glob.glob("/sys/bus/*/uevent")):
        if stat.S_ISREG(os.stat(target).st_mode) and _unreadable(Path(target)):
            _symlink(target, link)
            return {link.name: "fail:permission"}
    return {}


# --- helpers ------------------------------------------------------------------------------------

def _path(path: Path) -> Path:
    """``path`` ready to be written: parent made, any previous file or link removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    return path


def _write(path: Path, y: np.ndarray, sr: int, **options) -> None:
    sf.write(_path(path), y, sr, **options)


def _symlink(target: str, link: Path) -> None:
    os.symlink(target, _path(link))


def _unreadable(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


def _with(value: float) -> np.ndarray:
    """A 1 s float signal at 16 kHz, quiet, with one ``value`` sample in the middle."""
    y = 0.1 * tone(16000)[:, 0]
    y[8000] = value
    return y


def _wav_bytes(root: Path) -> bytes:
    """Bytes of a valid 1 s 16 kHz 16-bit WAV with a 44-byte header."""
    scratch = _path(root / ".scratch.wav")
    sf.write(scratch, tone(16000), 16000, subtype="PCM_16")
    data = scratch.read_bytes()
    scratch.unlink()
    assert data[36:40] == b"data", "expected the canonical 44-byte header"
    return data
