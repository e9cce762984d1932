"""Augmentation of training windows in the CQT domain, as named, seeded settings.

The features are log-CQT frames, ``x = log(compression * |C| + 1)``. Every transform but the
onset shift works on the linear magnitudes ``|C| = expm1(x) / compression``, where it equals, or
closely approximates, the same operation on the audio. Each window gets each transform with its
probability ``<name>_p``, with its own parameters drawn uniformly from the range:

==========  ===========================================================  =====================
transform   what it does to a window                                     range (default)
==========  ===========================================================  =====================
``shift``   the window's centre moves by d frames, d uniform in           ``shift_frames`` (2)
            {-shift_frames..shift_frames}, kept inside the sample: the
            onset lands elsewhere in the window. Exact (another window).
``room``    a short room: each bin's power P = |C|^2 gets a decaying      ``room_rt60`` (0.1-0.8
            tail, T[t] = sum_k>=1 a^k P[t-k], out = sqrt(P + w T)         s), ``room_level_db``
            (the reverberant sound is incoherent with the direct one, so  (-18 to -6 dB)
            powers add). The decay a falls 60 dB in RT60 seconds at the
            lowest bin and in half of it at the highest (air absorbs the
            highs); w sets the tail's total energy to ``room_level_db``
            of the direct sound's. Frames before the window feed the tail
            (:meth:`Augment.context_frames`).
``detune``  every bin moves by d * bins_per_octave / 12 bins, d uniform   ``detune_semitones``
            in +-detune_semitones (0.5 = +-1 bin at 24 bins/octave),      (0.5)
            linear interpolation between bins for a fractional shift;
            bins shifted in from outside are silent. Constant Q makes a
            pitch shift a translation along bins: exact for whole bins.
``tilt``    bin b times 10^(s (b - b_mid) / bins_per_octave / 20),        ``tilt_db_per_octave``
            s uniform in +-tilt_db_per_octave dB/octave, 0 dB at the      (3)
            middle bin: a tilt EQ, exact where its gain is constant over
            a bin's bandwidth.
``gain``    |C| times 10^(g / 20), g uniform in +-gain_db. Exact.         ``gain_db`` (6)
``noise``   a noise floor flat across CQT bins (pink noise), added in     ``noise_snr_db`` (10
            power: out = sqrt(|C|^2 + N^2), N^2 = sigma^2 E with E ~       to 40 dB)
            Exp(1) (a complex Gaussian's power), sigma^2 = the window's
            mean power / 10^(snr / 10).
==========  ===========================================================  =====================

They are applied in that order (noise last: it is the recording's floor). Frames outside the
sample stay silent (zeros), as in every window. Drawing (:meth:`Augment.draw`) and applying
(:meth:`Augment.apply`) are separate, both vectorised over the windows; every random number comes
from the generator passed in, so a sampler's batches stay a pure function of its seed.

``Augment()`` changes nothing; ``Augment.default()`` turns every transform on with the
probabilities of :data:`DEFAULT_P`; ``Augment.from_spec("gain,noise=20:40@0.5")`` reads the
``--augment`` option. Like a scikit-learn estimator, :meth:`Augment.get_params` is what the
model's config records, and ``Augment(**params)`` rebuilds it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["Augment", "AugmentDraw", "TRANSFORMS", "DEFAULT_P", "parse_augment"]

TRANSFORMS = ("shift", "room", "detune", "tilt", "gain", "noise")  # in the order applied
DEFAULT_P = {"shift": 0.5, "room": 0.3, "detune": 0.3, "tilt": 0.5, "gain": 0.5, "noise": 0.3}
_RANGE = {  # the field a spec's "=RANGE" sets, per transform
    "shift": "shift_frames",
    "room": "room_rt60",
    "detune": "detune_semitones",
    "tilt": "tilt_db_per_octave",
    "gain": "gain_db",
    "noise": "noise_snr_db",
}
_DB60 = 6.0  # RT60: the power falls by 10^6


@dataclass(frozen=True)
class AugmentDraw:
    """The parameters drawn for n windows, one array entry per window.

    A window without a transform has its identity value (shift 0, rt60 0, detune 0, tilt 0,
    gain 0 dB, snr inf). Made by :meth:`Augment.draw`; ``len(draw)`` is n.

    Attributes
    ----------
    shift : numpy.ndarray of int64, shape (n,)
        Frames the window's centre moves by.
    room_rt60 : numpy.ndarray of shape (n,)
        The room's RT60 in seconds at the lowest bin; 0: no room.
    room_level_db : numpy.ndarray of shape (n,)
        The tail's energy relative to the direct sound's, in dB (-inf: no room).
    detune : numpy.ndarray of shape (n,)
        Pitch shift in semitones.
    tilt : numpy.ndarray of shape (n,)
        Spectral tilt in dB per octave.
    gain_db : numpy.ndarray of shape (n,)
        Gain in dB.
    snr_db : numpy.ndarray of shape (n,)
        Signal-to-noise ratio of the added floor in dB; inf: no noise.
    """

    shift: np.ndarray  # int64 frames
    room_rt60: np.ndarray  # seconds at the lowest bin; 0: no room
    room_level_db: np.ndarray  # the tail's energy relative to the direct sound's
    detune: np.ndarray  # semitones
    tilt: np.ndarray  # dB per octave
    gain_db: np.ndarray
    snr_db: np.ndarray  # inf: no noise

    def __len__(self) -> int:
        return len(self.shift)

    @property
    def room_rows(self) -> np.ndarray:
        """Indices of the windows that get a room (they need frames before the window)."""
        return np.flatnonzero(self.room_rt60 > 0)

    @property
    def magnitude_rows(self) -> np.ndarray:
        """Indices of the windows whose magnitudes change (every transform but the shift)."""
        return np.flatnonzero((self.room_rt60 > 0) | (self.detune != 0) | (self.tilt != 0)
                              | (self.gain_db != 0) | np.isfinite(self.snr_db))


@dataclass(frozen=True)
class Augment:
    """Probabilities and ranges of the window augmentations (see the module doc).

    Every ``<name>_p`` is a probability in [0, 1] (0: off, the default); each transform's
    parameters are drawn uniformly from its range. Immutable; ``Augment(**aug.get_params())``
    rebuilds it.

    Parameters
    ----------
    shift_p, room_p, detune_p, tilt_p, gain_p, noise_p : float, default=0.0
        Probability of each transform, in [0, 1].
    shift_frames : int, default=2
        Largest onset shift, +- frames (integer >= 0).
    room_rt60 : (float, float), default=(0.1, 0.8)
        Range of RT60 in seconds, 0 < low <= high <= 5.
    room_level_db : (float, float), default=(-18.0, -6.0)
        Range of the tail's level relative to the direct sound, dB, high <= 20.
    detune_semitones : float, default=0.5
        Largest detune, +- semitones (0 to 12).
    tilt_db_per_octave : float, default=3.0
        Largest tilt EQ, +- dB/octave (0 to 24).
    gain_db : float, default=6.0
        Largest gain, +- dB (0 to 60).
    noise_snr_db : (float, float), default=(10.0, 40.0)
        Range of the noise floor's signal-to-noise ratio, dB.

    Raises
    ------
    ParameterError
        If a probability lies outside [0, 1] or a range is malformed or out of its bounds.
    """

    shift_p: float = 0.0
    shift_frames: int = 2
    room_p: float = 0.0
    room_rt60: tuple[float, float] = (0.1, 0.8)
    room_level_db: tuple[float, float] = (-18.0, -6.0)
    detune_p: float = 0.0
    detune_semitones: float = 0.5
    tilt_p: float = 0.0
    tilt_db_per_octave: float = 3.0
    gain_p: float = 0.0
    gain_db: float = 6.0
    noise_p: float = 0.0
    noise_snr_db: tuple[float, float] = (10.0, 40.0)

    def __post_init__(self):
        for name in TRANSFORMS:
            p = getattr(self, f"{name}_p")
            if not _is_number(p) or not 0 <= p <= 1:
                raise ParameterError(f"{name}_p={p!r} must be a probability in [0, 1]")
            object.__setattr__(self, f"{name}_p", float(p))
        for name in ("room_rt60", "room_level_db", "noise_snr_db"):
            value = getattr(self, name)
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(_is_number(v) for v in value) or value[0] > value[1]):
                raise ParameterError(f"{name}={value!r} must be a range (low, high), low <= high")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if not 0 < self.room_rt60[0] <= self.room_rt60[1] <= 5:
            raise ParameterError(f"room_rt60={self.room_rt60} must lie in (0, 5] seconds")
        if self.room_level_db[1] > 20:
            raise ParameterError(f"room_level_db={self.room_level_db} must stay <= 20 dB")
        for name, high in (("gain_db", 60), ("tilt_db_per_octave", 24), ("detune_semitones", 12)):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= high:
                raise ParameterError(f"{name}={value!r} must be a number in [0, {high}]")
            object.__setattr__(self, name, float(value))
        if isinstance(self.shift_frames, bool) or not isinstance(self.shift_frames,
                                                                 (int, np.integer)) \
                or self.shift_frames < 0:
            raise ParameterError(f"shift_frames={self.shift_frames!r} must be an integer >= 0")
        object.__setattr__(self, "shift_frames", int(self.shift_frames))

    # -- configuration ---------------------------------------------------------------------------

    @classmethod
    def default(cls) -> "Augment":
        """Every transform on, with the probabilities of :data:`DEFAULT_P` and default ranges.

        Returns
        -------
        Augment
        """
        return cls(**{f"{name}_p": p for name, p in DEFAULT_P.items()})

    @classmethod
    def from_spec(cls, spec: str) -> "Augment | None":
        """Read the value of the ``--augment`` option.

        Parameters
        ----------
        spec : str
            ``none`` (or ``off``, or empty), ``default``, or a comma list of
            ``NAME[=RANGE][@P]``: NAME one of :data:`TRANSFORMS` (or ``default`` first, to start
            from every transform); RANGE one number for the +- ranges (gain, tilt, shift,
            detune) or ``LOW:HIGH`` (room's RT60 in seconds, noise's SNR in dB; one number:
            that value); P the probability (default :data:`DEFAULT_P`'s). Transforms not named
            stay off.

        Returns
        -------
        Augment or None
            None when nothing is on.

        Raises
        ------
        ParameterError
            If ``spec`` is not a string, has an empty item, an unknown transform, a value that
            is not a number, or settings out of their bounds.
        """
        if not isinstance(spec, str):
            raise ParameterError(f"augment={spec!r} must be a string")
        items = [s.strip() for s in spec.split(",")]
        if items in (["none"], ["off"], [""]):
            return None
        if any(not item for item in items):
            raise ParameterError(f"augment={spec!r} has an empty item")
        changes: dict = {}
        for i, item in enumerate(items):
            if item == "default" and i == 0:
                changes.update({f"{name}_p": p for name, p in DEFAULT_P.items()})
                continue
            head, _, prob = item.partition("@")
            name, _, rng = head.partition("=")
            if name not in TRANSFORMS:
                raise ParameterError(
                    f"augment item {item!r}: unknown transform {name!r}; choose from "
                    f"{', '.join(TRANSFORMS)} (or none, default)")
            changes[f"{name}_p"] = _number(prob, item) if prob else DEFAULT_P[name]
            if rng:
                changes[_RANGE[name]] = _range_value(name, rng, item)
        return cls(**changes).or_none()

    def get_params(self) -> dict:
        """The fields, JSON-ready: what the model's config records.

        Returns
        -------
        dict
            Every field by name, ranges as lists.
        """
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: "dict | Augment | str | None") -> "Augment | None":
        """An Augment from :meth:`get_params` output, a spec string, an Augment or None.

        Parameters
        ----------
        params : dict, Augment, str or None
            Settings by field name, a spec for :meth:`from_spec`, or an Augment or None
            (returned as is).

        Returns
        -------
        Augment or None

        Raises
        ------
        ParameterError
            If ``params`` is of another type, names an unknown setting, or a value is invalid.
        """
        if params is None or isinstance(params, Augment):
            return params
        if isinstance(params, str):
            return cls.from_spec(params)
        if not isinstance(params, dict):
            raise ParameterError(f"augment={params!r} must be a dict of settings, a spec or None")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ParameterError(f"augment has no setting {unknown[0]!r}; its settings: "
                                 f"{', '.join(f.name for f in fields(cls))}")
        return cls(**params)

    @property
    def active(self) -> bool:
        """Whether any transform has a non-zero probability."""
        return any(getattr(self, f"{name}_p") > 0 for name in TRANSFORMS)

    def or_none(self) -> "Augment | None":
        """self, or None when nothing is on.

        Returns
        -------
        Augment or None
        """
        return self if self.active else None

    def spec(self) -> str:
        """A short description, readable by :meth:`from_spec` (with the ranges).

        Returns
        -------
        str
            Comma list of ``NAME=RANGE@P`` for the transforms that are on, or ``none``.
        """
        out = []
        for name in TRANSFORMS:
            p = getattr(self, f"{name}_p")
            if p > 0:
                value = getattr(self, _RANGE[name])
                rng = f"{value[0]:g}:{value[1]:g}" if isinstance(value, tuple) else f"{value:g}"
                out.append(f"{name}={rng}@{p:g}")
        return ",".join(out) or "none"

    def with_p(self, **probabilities: float) -> "Augment":
        """A copy with some probabilities changed: ``aug.with_p(gain=1.0)``.

        Parameters
        ----------
        **probabilities : float
            New probability per transform name (without the ``_p``).

        Returns
        -------
        Augment
        """
        return replace(self, **{f"{k}_p": v for k, v in probabilities.items()})

    def context_frames(self, frame_seconds: float) -> int:
        """Frames before a window that feed the room's tail.

        They reach back until the longest tail has fallen 30 dB (half its RT60), 36 dB or more
        below the sound that made it.

        Parameters
        ----------
        frame_seconds : float
            Duration of one frame (the hop).

        Returns
        -------
        int
            Number of context frames; 0 when the room is off.
        """
        if self.room_p == 0:
            return 0
        return int(math.ceil(self.room_rt60[1] / 2 / frame_seconds))

    # -- drawing and applying ---------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, n: int) -> AugmentDraw:
        """Which windows get which transform, with what parameters, for n windows.

        Draws nothing for a transform whose probability is 0.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of every random number.
        n : int
            Number of windows.

        Returns
        -------
        AugmentDraw
        """
        out = {
            "shift": np.zeros(n, np.int64), "room_rt60": np.zeros(n),
            "room_level_db": np.full(n, -np.inf), "detune": np.zeros(n), "tilt": np.zeros(n),
            "gain_db": np.zeros(n), "snr_db": np.full(n, np.inf),
        }

        def on(name):
            p = getattr(self, f"{name}_p")
            return rng.random(n) < p if p > 0 else None

        if (m := on("shift")) is not None:
            d = self.shift_frames
            out["shift"] = np.where(m, rng.integers(-d, d + 1, size=n), 0)
        if (m := on("room")) is not None:
            rt60 = rng.uniform(*self.room_rt60, size=n)
            level = rng.uniform(*self.room_level_db, size=n)
            out["room_rt60"] = np.where(m, rt60, 0.0)
            out["room_level_db"] = np.where(m, level, -np.inf)
        for name, key, half in (("detune", "detune", self.detune_semitones),
                                ("tilt", "tilt", self.tilt_db_per_octave),
                                ("gain", "gain_db", self.gain_db)):
            if (m := on(name)) is not None:
                out[key] = np.where(m, rng.uniform(-half, half, size=n), 0.0)
        if (m := on("noise")) is not None:
            out["snr_db"] = np.where(m, rng.uniform(*self.noise_snr_db, size=n), np.inf)
        return AugmentDraw(**out)

    @staticmethod
    def apply(x: np.ndarray, d: AugmentDraw, rng: np.random.Generator, *,
              valid: np.ndarray | None = None, context: np.ndarray | None = None,
              compression: float = 50.0, bins_per_octave: int = 24,
              frame_seconds: float = 0.05) -> np.ndarray:
        """Apply drawn transforms to log-CQT windows.

        Every transform but the shift, which moves the window before it is cut.

        Parameters
        ----------
        x : array-like of shape (n, window, n_bins)
            The log-CQT windows.
        d : AugmentDraw
            What to apply to each window, from :meth:`draw` (n entries).
        rng : numpy.random.Generator
            Draws the noise floor.
        valid : array-like of bool, shape (n, window), optional
            The frames inside the sample (default: all).
        context : array-like of shape (len(d.room_rows), k, n_bins), optional
            Log-CQT: the k frames before each window that gets a room, in ``d.room_rows``
            order (k = :meth:`context_frames`; zeros where they precede the sample). Required
            when any window gets a room.
        compression : float, default=50.0
            The log-CQT's compression (``x = log(compression * |C| + 1)``).
        bins_per_octave : int, default=24
            CQT resolution, for the detune and tilt.
        frame_seconds : float, default=0.05
            Duration of one frame, for the room's decay.

        Returns
        -------
        numpy.ndarray of float32, shape (n, window, n_bins)
            A new array.

        Raises
        ------
        ParameterError
            If ``x`` does not hold one window per draw, or ``context`` is missing or does not
            hold one entry per window that gets a room.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or len(x) != len(d):
            raise ParameterError(f"x has shape {x.shape}; expected ({len(d)}, window, n_bins)")
        n, window, n_bins = x.shape
        valid = np.ones((n, window), bool) if valid is None else np.asarray(valid, bool)
        out = x.copy()
        rows = d.magnitude_rows
        if not len(rows):
            return out
        c = np.float32(compression)
        lin = np.expm1(x[rows]) / c
        at = np.full(n, -1, np.int64)
        at[rows] = np.arange(len(rows))

        room = d.room_rows
        if len(room):
            if context is None or len(context) != len(room):
                raise ParameterError(f"{len(room)} windows get a room: context must hold the "
                                     "frames before each of them")
            before = np.expm1(np.asarray(context, np.float32)) / c
            k = before.shape[1]
            full = np.concatenate([before, lin[at[room]]], axis=1)
            lin[at[room]] = _room(full, d.room_rt60[room], d.room_level_db[room],
                                  frame_seconds)[:, k:]
        r = np.flatnonzero(d.detune != 0)
        if len(r):
            lin[at[r]] = shift_bins(lin[at[r]], d.detune[r] * bins_per_octave / 12.0)
        r = np.flatnonzero(d.tilt != 0)
        if len(r):
            octaves = (np.arange(n_bins) - (n_bins - 1) / 2) / bins_per_octave
            lin[at[r]] *= (10 ** (d.tilt[r, None] * octaves / 20)).astype(np.float32)[:, None]
        r = np.flatnonzero(d.gain_db != 0)
        if len(r):
            lin[at[r]] *= (10 ** (d.gain_db[r] / 20)).astype(np.float32)[:, None, None]
        v = valid[rows]
        lin *= v[:, :, None]  # a room's tail does not ring on past the sample's end
        r = np.flatnonzero(np.isfinite(d.snr_db))
        if len(r):
            sub, vr = lin[at[r]], v[at[r]]
            power = np.einsum("ntb,ntb->n", sub, sub, dtype=np.float64)
            power /= np.maximum(vr.sum(axis=1), 1) * n_bins
            sigma2 = (power / 10 ** (d.snr_db[r] / 10)).astype(np.float32)
            floor = rng.standard_exponential(sub.shape, dtype=np.float32)
            floor *= (sigma2[:, None] * vr)[:, :, None]
            lin[at[r]] = np.sqrt(sub * sub + floor)
        out[rows] = np.log1p(lin * c)
        return out


def shift_bins(lin: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Move each window up along the bins by its own, possibly fractional, amount.

    With k = floor(bins[i]) and f = bins[i] - k: out = (1 - f) up(k) + f up(k + 1), up(j) the
    window moved up by j whole bins (linear interpolation); windows are grouped by k, a few
    slices each.

    Parameters
    ----------
    lin : numpy.ndarray of shape (n, window, n_bins)
        Windows of linear magnitudes.
    bins : array-like of shape (n,)
        Bins to move each window up by (down when negative).

    Returns
    -------
    numpy.ndarray of shape (n, window, n_bins)
        A new array; bins moved in from outside are 0.
    """
    bins = np.asarray(bins, dtype=np.float64)
    k = np.floor(bins).astype(np.int64)
    f = (bins - k).astype(lin.dtype)
    out = np.empty_like(lin)
    for j in np.unique(k):
        rows = np.flatnonzero(k == j)
        sub = lin[rows]
        low, high = _moved_up(sub, int(j)), _moved_up(sub, int(j) + 1)
        high -= low
        high *= f[rows, None, None]
        low += high
        out[rows] = low
    return out


def _moved_up(x: np.ndarray, j: int) -> np.ndarray:
    """x moved up by j whole bins along the last axis (down for j < 0), zeros shifted in."""
    out = np.zeros_like(x)
    n_bins = x.shape[-1]
    if 0 <= j < n_bins:
        out[..., j:] = x[..., : n_bins - j]
    elif -n_bins < j < 0:
        out[..., : n_bins + j] = x[..., -j:]
    return out


def _room(lin: np.ndarray, rt60: np.ndarray, level_db: np.ndarray,
          frame_seconds: float) -> np.ndarray:
    """The room of the module doc on linear magnitudes (n, frames, n_bins)."""
    n, window, n_bins = lin.shape
    rt = rt60[:, None] * (1 - 0.5 * np.arange(n_bins) / max(n_bins - 1, 1))  # (n, n_bins)
    a = 10 ** (-_DB60 * frame_seconds / rt)  # per-frame power decay
    # an impulse's tail, w * (a + a^2 + ...) = w a / (1 - a), carries level_db of its energy
    w = (10 ** (level_db[:, None] / 10) * (1 - a) / np.maximum(a, 1e-30)).astype(np.float32)
    a = a.astype(np.float32)
    power = np.ascontiguousarray((lin * lin).transpose(1, 0, 2))  # (frames, n, n_bins)
    tail = np.zeros((n, n_bins), np.float32)
    wet = np.empty_like(tail)
    out = np.empty_like(power)
    for t in range(window):
        np.multiply(w, tail, out=wet)
        np.add(power[t], wet, out=out[t])
        tail += power[t]
        tail *= a
    return np.sqrt(out, out=out).transpose(1, 0, 2)


def parse_augment(spec: "str | None") -> "Augment | None":
    """``--augment``'s value as an Augment.

    Parameters
    ----------
    spec : str or None
        The option's value; see :meth:`Augment.from_spec`.

    Returns
    -------
    Augment or None
        None for ``none`` or no value.

    Raises
    ------
    ParameterError
        If the spec cannot be read.
    """
    return None if spec is None else Augment.from_spec(spec)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def _number(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"augment item {item!r}: {text!r} is not a number") from None
    return value


def _range_value(name: str, text: str, item: str):
    field = _RANGE[name]
    if field in ("room_rt60", "noise_snr_db"):
        low, sep, high = text.partition(":")
        low_v = _number(low, item)
        return (low_v, _number(high, item) if sep else low_v)
    if ":" in text:
        raise ParameterError(f"augment item {item!r}: {name} takes one number, the +- range")
    value = _number(text, item)
    if field == "shift_frames":
        if value != int(value):
            raise ParameterError(f"augment item {item!r}: shift takes a whole number of frames")
        return int(value)
    return value
