"""``soundatlas train``'s setting flags, generated from the fields of
:class:`~soundatlas.settings.TrainSettings`.

Every field is a flag (``batch_size``: ``--batch-size``) unless :data:`NOT_ON_COMMAND_LINE`
names it. The field's type gives the flag's type: an ``int`` is a count (at least 1, metavar
``N``), a ``float`` a positive number, a ``bool`` a ``--X/--no-X`` switch, anything else text;
the help says ``override the preset's``. :data:`FLAGS` holds what differs from that for a field
(a better help text, choices, a metavar, another type). Every flag defaults to None, "the
preset's", except ``--preset``, which chooses the preset the others override; so
:func:`train_settings` is ``settings_for(preset, **every flag)``.

To add a training setting, add the field to ``TrainSettings`` (and its value to the presets
where it differs): ``soundatlas train --the-field`` follows. An entry in :data:`FLAGS` is
optional.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from soundatlas.cli.common import (THREADS, checked, nonnegative_float, nonnegative_int,
                                   positive_float, positive_int)
from soundatlas.settings import PRESETS, TrainSettings, settings_for

__all__ = ["NOT_ON_COMMAND_LINE", "FLAGS", "setting_names", "SettingFlags", "train_settings"]

#: Fields of TrainSettings that are not command-line flags (a preset or Python sets them).
NOT_ON_COMMAND_LINE = frozenset({"m_p", "m_n", "origin_weight", "noise_mean", "noise_std",
                                 "n_valid_batches"})

_OVERRIDE = "override the preset's"


@checked
def _augment(text: str):
    """``train --augment``: read here, so a bad one is a usage error naming the option."""
    from soundatlas.augment import parse_augment

    return parse_augment(text)


#: ``add_argument`` keywords of the fields whose flag is not what their type gives.
FLAGS: dict[str, dict] = {
    "preset": dict(choices=list(PRESETS), default="fast",
                   help="paper: SGD lr 0.02, 32 triples, 50,000 iterations (the reference); "
                   "fast: ours, see docs/DESIGN.md §6 (default)"),
    "optimizer": dict(choices=["sgd", "adam"]),
    "lr": dict(metavar="LR"),
    "momentum": dict(type=float, metavar="M", help=f"SGD momentum, 0 to below 1 ({_OVERRIDE})"),
    "batch_size": dict(help=f"triples per step ({_OVERRIDE})"),
    "schedule": dict(choices=["constant", "cosine"],
                     help=f"learning-rate schedule after warm-up ({_OVERRIDE})"),
    "warmup": dict(type=nonnegative_int,
                   help=f"iterations of linear learning-rate warm-up ({_OVERRIDE})"),
    "standardize": dict(help="per-bin standardisation of the input (not in the paper; on in "
                        "the fast preset, off in the paper preset)"),
    "valid_every": dict(help=f"iterations between validation losses ({_OVERRIDE})"),
    "checkpoint_every": dict(help=f"iterations between checkpoints ({_OVERRIDE})"),
    "threads": dict(THREADS.kwargs),
    "precision": dict(choices=["fp32", "bf16", "auto"],
                      help="arithmetic of the training pass: fp32 (the reference), bf16 "
                      "(autocast), auto (bf16 where the CPU has it natively); override the "
                      "preset's"),
    "fused_pool": dict(choices=["on", "off", "auto"],
                       help="each tanh + max-pool pair as one faster step that pools first: the "
                       "same forward, a gradient that differs only where tanh rounds two values "
                       "equal; auto: on the CPU only (the fast preset's); off: the paper "
                       "preset's"),
    "noise_rng": dict(choices=["numpy", "torch"],
                      help="generator of the training noise: numpy (the paper preset's) or torch "
                      "(the fast preset's: the same distribution, faster)"),
    "augment": dict(type=_augment, metavar="SPEC",
                    help="augmentation of the training windows: none (the default, and the "
                    "paper's), default (all six), or a list of NAME[=RANGE][@P]: gain (+-dB, 6), "
                    "tilt (+-dB/octave, 3), room (RT60 LOW:HIGH s, 0.1:0.8), noise (SNR LOW:HIGH "
                    "dB, 10:40), shift (+-frames, 2), detune (+-semitones, 0.5), P the "
                    "probability per window (shift 0.5, room 0.3, detune 0.3, tilt 0.5, gain "
                    "0.5, noise 0.3), e.g. gain=9,noise=20:40@0.5"),
    "anchor": dict(type=nonnegative_float, metavar="W",
                   help="with --init-from: weight of a pull towards the points the starting "
                   "model gives each window (their mean squared move, the negative margin being 1), "
                   "beside the contrastive loss; 0: none (the default, and the paper's)"),
}

#: The flag a field's type gives, before FLAGS.
_BY_TYPE: dict[str, dict] = {
    "int": dict(type=positive_int, metavar="N"),
    "float": dict(type=positive_float),
    "bool": dict(action=argparse.BooleanOptionalAction),
}


def setting_names() -> list[str]:
    """The TrainSettings fields that are command-line flags, in the dataclass's order.

    Returns
    -------
    list of str
        Field names (each is also its flag's ``dest``).
    """
    return [f.name for f in fields(TrainSettings) if f.name not in NOT_ON_COMMAND_LINE]


def _type_name(annotation) -> str:
    """``'int'`` of ``int``, ``'int | None'`` or ``'Optional[int]'``."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                  str(annotation))
    text = text.removeprefix("Optional[").removesuffix("]")
    return next(part.strip() for part in text.split("|") if part.strip() != "None")


def _flag_kwargs(name: str) -> dict:
    annotation = {f.name: f.type for f in fields(TrainSettings)}[name]
    return {"dest": name, "default": None, "help": _OVERRIDE,
            **_BY_TYPE.get(_type_name(annotation), {}), **FLAGS.get(name, {})}


class SettingFlags:
    """Adds the setting flags to one parser, each once, in the order asked for.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        ``soundatlas train``'s parser.

    Examples
    --------
    >>> flags = SettingFlags(parser)                  # doctest: +SKIP
    >>> flags.add("preset", "iterations")             # doctest: +SKIP
    >>> parser.add_argument("--seed", type=int)       # doctest: +SKIP
    >>> flags.add_rest()                              # doctest: +SKIP
    """

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser
        self.added: list[str] = []

    def add(self, *names: str) -> None:
        """Add the flags of the fields ``names``, in that order.

        Parameters
        ----------
        *names : str
            TrainSettings field names, of :func:`setting_names`.

        Raises
        ------
        ValueError
            When a name is not a setting flag or was added already.
        """
        for name in names:
            if name not in setting_names() or name in self.added:
                raise ValueError(f"{name!r} is not a setting flag, or was added already")
            self.parser.add_argument("--" + name.replace("_", "-"), **_flag_kwargs(name))
            self.added.append(name)

    def add_rest(self) -> None:
        """Add the flags of every setting not added yet, in the dataclass's order."""
        self.add(*[name for name in setting_names() if name not in self.added])


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """The TrainSettings a ``soundatlas train`` command line asks for: the preset's, overridden.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; ``args.preset`` names the preset, every other setting flag
        that is not None overrides its field.

    Returns
    -------
    TrainSettings
        The settings, validated.

    Raises
    ------
    soundatlas.errors.ParameterError
        When the settings are not valid together.
    """
    return settings_for(args.preset, **{name: getattr(args, name, None)
                                        for name in setting_names() if name != "preset"})
