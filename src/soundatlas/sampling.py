"""The triple sampler: deterministic, resumable batches of (anchor, positive, negative) windows.

A neighbourhood (:mod:`soundatlas.neighbourhoods`) draws triples of (sample, centre frame) from
the :class:`~soundatlas.frames.TrainingData`; :class:`TripleSampler` cuts their windows
(:func:`~soundatlas.frames.windows`), augments them (:mod:`soundatlas.augment`) when the run or
the neighbourhood asks for it, adds the paper's input noise (:func:`~soundatlas.frames.add_noise`)
and yields batches, from one random generator whose state a checkpoint saves.

The training data, windows and noise live in :mod:`soundatlas.frames` (the neighbourhoods need
them, and the sampler needs the neighbourhoods: two modules keep the import graph a tree); their
names are importable from here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import torch

from soundatlas.augment import Augment
from soundatlas import frames
from soundatlas.errors import ParameterError
from soundatlas.frames import (  # noqa: F401  (re-exported: the sampler's inputs)
    DEFAULT_NOISE,
    NOISE_RNGS,
    TrainingData,
    add_noise,
    draw_centres,
    frame_energy,
    window_bounds,
    window_valid,
    windows,
)

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.neighbourhoods import Neighbourhood

__all__ = ["TripleSampler", *frames.__all__]


class TripleSampler:
    """Batches of noised (anchor, positive, negative) windows drawn by a neighbourhood.

    Every random choice (keys, samples, centres, augmentation, noise) comes from one PCG64
    generator seeded with ``seed``; :meth:`state` / :meth:`set_state` save and restore it, so a
    resumed training run sees exactly the batches it would have seen. Without any augmentation
    no extra random number is drawn: a batch is the neighbourhood's windows plus the noise.
    The neighbourhood is fitted on ``data`` here unless it already is. Iterating yields
    :meth:`next_batch` without end.

    Parameters
    ----------
    data : TrainingData
        The training frames.
    neighbourhood : Neighbourhood
        Draws the triples of (sample, centre frame).
    batch_size : int, default=32
        Triples per batch (>= 1).
    window : int, default=10
        Frames per window (>= 1).
    seed : int, default=0
        Seed of the generator.
    noise : (float, float) or None, default=DEFAULT_NOISE
        Mean and standard deviation (>= 0) of the input noise; None turns it off.
    noise_rng : {'numpy', 'torch'}, default='numpy'
        ``numpy`` draws the noise from the generator (the reference); ``torch`` from a torch
        generator seeded per batch by it: the same distribution, still one state to save, 3x
        faster (1.4 -> 0.4 ms for a batch of 96 windows, which is most of the sampler's time).
    augment : Augment or None, default=None
        The run's augmentation for every window, each drawn independently (None: none).
        Triples whose neighbourhood names its own augmentation (``Triples.augments``, e.g.
        augment-pair's) get that one instead.

    Attributes
    ----------
    rng : numpy.random.Generator
        The one generator every draw comes from.
    n_batches : int
        Batches drawn so far.

    Raises
    ------
    ParameterError
        If a setting is out of its range, or ``augment`` is not an Augment or None.
    """

    def __init__(self, data: TrainingData, neighbourhood: "Neighbourhood", *, batch_size: int = 32,
                 window: int = 10, seed: int = 0,
                 noise: tuple[float, float] | None = DEFAULT_NOISE, noise_rng: str = "numpy",
                 augment: Augment | None = None):
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be at least 1")
        if window < 1:
            raise ParameterError(f"window={window} must be at least 1")
        if noise is not None and (len(noise) != 2 or noise[1] < 0):
            raise ParameterError(f"noise={noise!r} must be (mean, std) with std >= 0, or None")
        if augment is not None and not isinstance(augment, Augment):
            raise ParameterError(f"augment={augment!r} must be an Augment or None")
        self.data = data
        self.neighbourhood = neighbourhood
        self.batch_size = int(batch_size)
        self.window = int(window)
        self.seed = int(seed)
        if noise_rng not in NOISE_RNGS:
            raise ParameterError(f"noise_rng={noise_rng!r} must be one of {', '.join(NOISE_RNGS)}")
        self.noise = None if noise is None else (float(noise[0]), float(noise[1]))
        self.noise_rng = noise_rng
        self.augment = None if augment is None else augment.or_none()
        if not neighbourhood.is_fitted():
            neighbourhood.fit(data)
        self.rng = np.random.default_rng(self.seed)
        self.n_batches = 0

    def draw_arrays(self, *, with_centres: bool = False) -> tuple[np.ndarray, ...]:
        """The next batch as numpy arrays.

        Parameters
        ----------
        with_centres : bool, default=False
            Also return every window's centre frame before the input noise (anchors, then
            positives, then negatives): what a model with a pitch axis reads its height from,
            as ``embed`` does. The draws are the same either way.

        Returns
        -------
        anchor, positive, negative : numpy.ndarray of float32, shape (batch_size, window, n_bins)
        centres : numpy.ndarray of float32, shape (3 * batch_size, n_bins)
            With ``with_centres`` only.
        """
        t = self.neighbourhood.draw(self.rng, self.batch_size, self.data)
        s = np.concatenate([t.anchor_sample, t.positive_sample, t.negative_sample])
        c = np.concatenate([t.anchor_centre, t.positive_centre, t.negative_centre])
        groups = self._augment_groups(t)
        if groups:
            x = self._augmented_windows(s, c, groups)
        else:
            x = windows(self.data, s, c, window=self.window)
        centres = x[:, self.window // 2].copy() if with_centres else None
        if self.noise is not None:
            noise = dict(mean=self.noise[0], std=self.noise[1], compression=self.data.compression)
            if self.noise_rng == "torch":
                seed = int(self.rng.integers(2**63))
                x = add_noise(torch.from_numpy(x), torch.Generator().manual_seed(seed),
                              **noise).numpy()
            else:
                x = add_noise(x, self.rng, **noise)
        self.n_batches += 1
        b = self.batch_size
        out = (x[:b], x[b : 2 * b], x[2 * b :])
        return out + (centres,) if with_centres else out

    def _augment_groups(self, t) -> list[tuple[np.ndarray, Augment]]:
        """(window rows, augmentation) pairs: the run's for triples that name none, each
        neighbourhood-named one for its triples; rows index the batch's 3n windows."""
        codes = np.full(len(t), -1, np.int64) if t.augment_of is None else t.augment_of
        table = {-1: self.augment, **dict(enumerate(t.augments))}
        codes = np.tile(codes, 3)
        out = []
        for code in np.unique(codes):
            aug = table[int(code)]
            if aug is not None and aug.active:
                out.append((np.flatnonzero(codes == code), aug))
        return out

    def _augmented_windows(self, s, c, groups) -> np.ndarray:
        data, window = self.data, self.window
        c = c.copy()
        draws = []
        for rows, aug in groups:
            d = aug.draw(self.rng, len(rows))
            last = np.maximum(data.lengths[s[rows]] - 1, 0)
            c[rows] = np.clip(c[rows] + d.shift, 0, last)
            draws.append(d)
        x = windows(data, s, c, window=window)
        valid = window_valid(data, s, c, window=window)
        for (rows, aug), d in zip(groups, draws):
            context = None
            room = rows[d.room_rows]
            if len(room):
                k = aug.context_frames(data.frame_seconds)
                context = windows(data, s[room], c[room], window=window, before=k)[:, :k]
            x[rows] = aug.apply(x[rows], d, self.rng, valid=valid[rows], context=context,
                                compression=data.compression,
                                bins_per_octave=data.bins_per_octave,
                                frame_seconds=data.frame_seconds)
        return x

    def next_batch(self, *, with_centres: bool = False) -> tuple[torch.Tensor, ...]:
        """The next batch as tensors (``draw_arrays``'s).

        Returns
        -------
        anchor, positive, negative : torch.Tensor of float32, shape (batch_size, window, n_bins)
        centres : torch.Tensor of float32, shape (3 * batch_size, n_bins)
            With ``with_centres`` only: the windows' centre frames before the input noise.
        """
        return tuple(torch.from_numpy(a) for a in self.draw_arrays(with_centres=with_centres))

    def __iter__(self):
        while True:
            yield self.next_batch()

    # -- checkpointing ---------------------------------------------------------------------------

    def _fingerprint(self) -> dict:
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "window": self.window,
            "noise": None if self.noise is None else list(self.noise),
            "noise_rng": self.noise_rng,
            "augment": None if self.augment is None else self.augment.get_params(),
            "neighbourhood": self.neighbourhood.name,
            "n_samples": self.data.n_samples,
        }

    def state(self) -> dict:
        """A JSON-serialisable snapshot: the generator state plus what it must be resumed with.

        Returns
        -------
        dict
            The settings that must match on resume, 'n_batches', and 'rng' (the PCG64 state,
            its 128-bit integers as strings).
        """
        bg = self.rng.bit_generator.state
        return {
            **self._fingerprint(),
            "n_batches": self.n_batches,
            # 128-bit integers as strings, so any JSON reader keeps them exact
            "rng": {
                "bit_generator": bg["bit_generator"],
                "state": str(bg["state"]["state"]),
                "inc": str(bg["state"]["inc"]),
                "has_uint32": int(bg["has_uint32"]),
                "uinteger": int(bg["uinteger"]),
            },
        }

    def set_state(self, state: dict) -> None:
        """Resume from a snapshot made by :meth:`state`.

        Parameters
        ----------
        state : dict
            From :meth:`state` (after a JSON round trip or not).

        Raises
        ------
        ParameterError
            When it was made with other settings, or with a generator other than PCG64.
        """
        mine = self._fingerprint()
        for key, value in mine.items():
            theirs = state.get(key, "numpy" if key == "noise_rng" else None)  # no noise_rng: numpy
            if key == "window" and key not in state:  # states saved before it had its own name
                theirs = state.get("n_frames")
            if key == "noise" and theirs is not None:
                theirs = [float(v) for v in theirs]
            if key == "augment":
                theirs = json.dumps(theirs, sort_keys=True)
                value = json.dumps(value, sort_keys=True)
            if theirs != value:
                raise ParameterError(
                    f"sampler state has {key}={state.get(key)!r}, this sampler {key}={value!r}"
                )
        r = state["rng"]
        if r.get("bit_generator") != "PCG64":
            raise ParameterError(
                f"sampler state has bit generator {r.get('bit_generator')!r}, not PCG64"
            )
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(r["state"]), "inc": int(r["inc"])},
            "has_uint32": int(r["has_uint32"]),
            "uinteger": int(r["uinteger"]),
        }
        self.rng = rng
        self.n_batches = int(state["n_batches"])
