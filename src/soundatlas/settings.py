"""Training settings: :class:`TrainSettings`, the named presets (:data:`PRESETS`: ``paper``, the
reference, and ``fast``, ours) and the learning-rate schedule.

Apart from the trainer (:mod:`soundatlas.train`) so that reading them loads neither torch nor the
network: the command line builds ``train``'s flags from these fields
(:mod:`soundatlas.cli.train_flags`), and ``soundatlas --help`` stays quick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from soundatlas.augment import Augment
from soundatlas.errors import ParameterError

__all__ = ["TrainSettings", "PRESETS", "PRECISIONS", "settings_for", "lr_at"]

#: The network's arithmetic, for training and embedding: ``auto`` is bf16 where the device
#: computes it natively, else fp32 (``model.inference_precision``, ``train.resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainSettings:
    """How to train. ``paper`` reproduces the reference; ``fast`` is ours (see PRESETS).

    Every field is a ``soundatlas train`` flag unless ``cli.train_flags.NOT_ON_COMMAND_LINE``
    names it. :meth:`validate` checks the values; :func:`settings_for` builds one from a preset.

    Parameters
    ----------
    preset : str, default='paper'
        The preset these settings come from (a key of :data:`PRESETS`).
    optimizer : {'sgd', 'adam'}, default='sgd'
    lr : float, default=0.02
        Learning rate (after warm-up, before any decay).
    momentum : float, default=0.0
        SGD momentum, from 0 (none) to below 1.
    batch_size : int, default=32
        Triples per step.
    iterations : int, default=50000
        Steps of the run.
    schedule : {'constant', 'cosine'}, default='constant'
        Learning-rate schedule after warm-up (:func:`lr_at`).
    warmup : int, default=0
        Iterations of linear warm-up.
    m_p, m_n : float, default=0.0, 1.0
        The loss's margins (:class:`~soundatlas.loss.ContrastiveLoss`).
    origin_weight : float or None, default=None
        The loss's origin weight; None: the neighbourhood's own
        (``Neighbourhood.origin_weight``).
    standardize : bool, default=False
        Per-bin input standardisation (not in the paper; see model.py).
    noise_mean, noise_std : float, default=0.1, 0.01
        The input noise on linear CQT magnitudes (:func:`~soundatlas.frames.add_noise`).
    valid_every : int, default=1000
        Iterations between validation losses.
    n_valid_batches : int, default=16
        Batches of the fixed validation set.
    checkpoint_every : int, default=1000
        Iterations between checkpoints.
    threads : int or None, default=None
        Torch threads (default: all cores).
    precision : {'fp32', 'bf16', 'auto'}, default='fp32'
        Arithmetic of the training forward/backward pass: fp32 (the reference), bf16 (autocast;
        weights, optimiser and loss stay fp32), or auto (bf16 where the CPU computes it
        natively, e.g. AVX512-BF16 or AMX, else fp32). Embedding has its own
        (``embed --precision``).
    fused_pool : {'on', 'off', 'auto'}, default='off'
        Each tanh + max-pool pair of the network as one autograd step that pools first
        (model.py, ``_MaxPoolTanh``): the same forward, ~1.2x faster training steps on the CPU;
        the gradient differs only at pairs whose tanh rounds equal. off is the reference; auto
        is on for the CPU, off on CUDA, where a step waits on kernel launches and the library's
        ops are faster.
    noise_rng : {'numpy', 'torch'}, default='numpy'
        Where the training noise comes from (:class:`~soundatlas.sampling.TripleSampler`):
        numpy (the reference) or a torch generator seeded per batch from the sampler's own: the
        same noise distribution, ~1 ms less per step. Validation triples and input statistics
        always use numpy.
    augment : Augment, dict, str or None, default=None
        Augmentation of the training windows (:class:`~soundatlas.augment.Augment`, its
        params or a spec; None: none, the paper's): gain, EQ tilt, a short room, a noise floor,
        onset shift, detune, each with a probability and a range. Stored as an Augment, or
        None when nothing is on.
    anchor : float, default=0.0
        Weight of a term that holds the points near where the model the run starts from
        (``train(init_from=...)``) puts them (:func:`~soundatlas.loss.anchor_loss`: the mean
        squared move in units of the negative margin ``m_n``), beside the contrastive loss;
        0: none (the paper's). For fine-tuning: ``adapt`` keeps its base's map with it.
    """

    preset: str = "paper"
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.02
    momentum: float = 0.0
    batch_size: int = 32  # triples per step
    iterations: int = 50_000
    schedule: str = "constant"  # constant | cosine
    warmup: int = 0  # iterations of linear warm-up
    m_p: float = 0.0
    m_n: float = 1.0
    origin_weight: float | None = None  # None: the neighbourhood's own
    standardize: bool = False  # per-bin input standardisation (not in the paper; see model.py)
    noise_mean: float = 0.1
    noise_std: float = 0.01
    valid_every: int = 1000
    n_valid_batches: int = 16
    checkpoint_every: int = 1000
    threads: int | None = None  # torch threads (default: all cores)
    precision: str = "fp32"  # fp32 | bf16 | auto
    fused_pool: str = "off"  # on | off | auto
    noise_rng: str = "numpy"  # numpy | torch
    augment: Augment | None = None  # None: none, the paper's
    anchor: float = 0.0  # weight of the pull towards the base model's points (init_from)

    def __post_init__(self):
        object.__setattr__(self, "augment", Augment.from_params(self.augment))
        if self.augment is not None:
            object.__setattr__(self, "augment", self.augment.or_none())

    def validate(self) -> "TrainSettings":
        """Check the values.

        Returns
        -------
        TrainSettings
            ``self``, unchanged.

        Raises
        ------
        ParameterError
            Naming the first setting with a value that cannot work: an unknown optimizer,
            schedule, precision, fused_pool or noise_rng; a learning rate, batch size, iteration
            count or interval that is not positive; a learning rate that is not finite; a
            momentum outside [0, 1); a negative margin or anchor weight.
        """
        if self.optimizer not in {"sgd", "adam"}:
            raise ParameterError(f"optimizer={self.optimizer!r} must be 'sgd' or 'adam'")
        if self.schedule not in {"constant", "cosine"}:
            raise ParameterError(f"schedule={self.schedule!r} must be 'constant' or 'cosine'")
        for name in ("lr", "batch_size", "iterations", "valid_every", "checkpoint_every"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name}={getattr(self, name)} must be positive")
        if self.batch_size > MAX_BATCH_SIZE:  # (one past it ended in numpy's MemoryError)
            raise ParameterError(f"batch_size={self.batch_size} must be at most "
                                 f"{MAX_BATCH_SIZE:,}")
        if not math.isfinite(self.lr):  # inf passes > 0 and turns every weight into NaN
            raise ParameterError(f"lr={self.lr} must be a finite number > 0")
        # torch refuses a negative momentum; at 1 or more past gradients never fade from the
        # steps, which grow without bound
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ParameterError(f"momentum={self.momentum} must be a finite number >= 0 and "
                                 "< 1")
        if self.fused_pool not in {"on", "off", "auto"}:
            raise ParameterError(f"fused_pool={self.fused_pool!r} must be 'on', 'off' or 'auto'")
        from soundatlas.sampling import NOISE_RNGS

        if self.noise_rng not in NOISE_RNGS:
            raise ParameterError(f"noise_rng={self.noise_rng!r} must be one of "
                                 f"{', '.join(NOISE_RNGS)}")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"precision={self.precision!r} must be 'fp32', 'bf16' or 'auto'")
        if not (math.isfinite(self.anchor) and self.anchor >= 0):
            raise ParameterError(f"anchor={self.anchor} must be a finite number >= 0")
        if self.m_p < 0 or self.m_n < 0:
            raise ParameterError(f"margins m_p={self.m_p}, m_n={self.m_n} must be >= 0")
        return self


#: the most triples a training step takes (each holds three windows of the input)
MAX_BATCH_SIZE = 65_536

PRESETS: dict[str, TrainSettings] = {
    # The reference: plain SGD, no momentum, lr 0.02, 32 triples, 50,000 iterations.
    "paper": TrainSettings(),
    # Ours: the paper's plain SGD (32 triples, no momentum) at twice its learning rate, 0.04, on
    # per-bin standardised input, for 15,000 iterations, in bf16 where the CPU has it natively,
    # with the fused tanh + max-pool step on the CPU and torch-drawn noise. Measured on the demo
    # library (benchmarks/RESULTS.md §6): instrument 0.735 and pitch 0.959 k-NN accuracy in
    # 0.13-0.15x the paper preset's CPU time (the paper preset: 0.734 and 0.963).
    "fast": TrainSettings(
        preset="fast", optimizer="sgd", lr=0.04, batch_size=32, iterations=15_000,
        standardize=True, precision="auto", fused_pool="auto", noise_rng="torch",
        valid_every=1000, checkpoint_every=1000,
    ),
}


def settings_for(preset: str, **overrides) -> TrainSettings:
    """A preset's settings with some fields overridden.

    Parameters
    ----------
    preset : str
        A key of :data:`PRESETS`.
    **overrides
        New values by field name; None values are ignored (the preset's stays).

    Returns
    -------
    TrainSettings
        Validated.

    Raises
    ------
    ParameterError
        For an unknown preset or field, or a value :meth:`TrainSettings.validate` refuses.
    """
    if preset not in PRESETS:
        raise ParameterError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(TrainSettings.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"unknown training settings: {', '.join(sorted(unknown))}")
    return replace(PRESETS[preset], **changes).validate()


def lr_at(settings: TrainSettings, iteration: int) -> float:
    """Learning rate at an iteration: linear warm-up, then constant or cosine decay.

    A pure function of the iteration, so a resumed run follows the same schedule.

    Parameters
    ----------
    settings : TrainSettings
        Its ``lr``, ``warmup``, ``schedule`` and ``iterations``.
    iteration : int
        0-based.

    Returns
    -------
    float
        ``lr * (iteration + 1) / warmup`` during warm-up; then ``lr``, or for the cosine
        schedule ``lr`` decayed to 0 at the last iteration.
    """
    if settings.warmup and iteration < settings.warmup:
        return settings.lr * (iteration + 1) / settings.warmup
    if settings.schedule == "cosine":
        span = max(1, settings.iterations - settings.warmup)
        progress = (iteration - settings.warmup) / span
        return settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return settings.lr
