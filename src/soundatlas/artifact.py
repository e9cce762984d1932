"""A trained model as an artefact: ``weights.npz`` (no pickle) plus ``config.json``.

The config holds everything needed to use and to reproduce the model: architecture, CQT
parameters, neighbourhood (one, ``{"name": ..., **params}``, or a weighted mixture, ``{"name":
"mixture", "spec": ..., "parts": [{"name": ..., "weight": ..., **params}, ...]}``) and label,
training preset and settings (augmentation included), seed, split, a fingerprint of the data, the
model it was fine-tuned from (``init_from``), metrics and the command that made it. Anything
that embeds checks the CQT parameters against the atlas's and refuses a mismatch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundatlas.atlas.records import ModelRecord
from soundatlas.cqt_params import CQTParams
from soundatlas.errors import AtlasError, ParameterError, SoundAtlasError

if TYPE_CHECKING:  # torch loads with the first model, not with the module
    import torch

__all__ = ["ModelArtifact", "SHIPPED_MODELS", "DEFAULT_MODEL", "check_cqt", "shipped_changed",
           "check_current", "is_shipped", "weights_digest", "same_model", "model_difference",
           "embed_from"]

SHIPPED_MODELS = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"
WEIGHTS, CONFIG = "weights.npz", "config.json"


@dataclass
class ModelArtifact:
    """A model: its network and its config.

    Attributes
    ----------
    name : str
        The model's name.
    config : dict
        What the module doc lists.
    model : torch.nn.Module
        The network.
    source : Path or None
        The directory it was loaded from.
    """

    name: str
    config: dict
    model: torch.nn.Module
    source: Path | None = None

    @property
    def cqt(self) -> CQTParams:
        """The CQT of the features the model reads."""
        return CQTParams(**self.config["cqt"])

    @property
    def dims(self) -> int:
        """The dimensions of the model's map."""
        return int(self.config["architecture"]["dims"])

    @property
    def neighbourhood(self):
        """The neighbourhood the model learned (unfitted; a ``Mixture`` for several), or None
        when the config names none."""
        from soundatlas.neighbourhoods import neighbourhood_from_config

        config = self.config.get("neighbourhood")
        return neighbourhood_from_config(config) if config else None

    @property
    def neighbourhood_spec(self) -> str | None:
        """How a command line names that neighbourhood (``instrument-pitch-2``,
        ``instrument:1,label:family:1``); the recorded name when this version cannot read it."""
        config = self.config.get("neighbourhood") or {}
        try:
            nb = self.neighbourhood
        except ParameterError:
            return config.get("spec") or config.get("name")
        return None if nb is None else nb.spec

    def save(self, directory: str | os.PathLike, *, dtype=np.float32) -> Path:
        """Write the weights and the config into ``directory``.

        Parameters
        ----------
        directory : path-like
            Created when absent.
        dtype : numpy dtype, default float32
            Of the stored weights (float16 halves the size).

        Returns
        -------
        Path
            ``directory``.
        """
        from soundatlas.model import state_to_arrays

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = state_to_arrays(self.model, dtype=dtype)
        tmp = directory / (WEIGHTS + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, directory / WEIGHTS)
        config = dict(self.config, name=self.name, weights_dtype=np.dtype(dtype).name)
        (directory / (CONFIG + ".tmp")).write_text(json.dumps(config, indent=2, default=str))
        os.replace(directory / (CONFIG + ".tmp"), directory / CONFIG)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ModelArtifact":
        """Load a model directory (weights.npz + config.json).

        Raises
        ------
        AtlasError
            When the directory is not a readable model directory.
        """
        from soundatlas.atlas.store import read_arrays
        from soundatlas.model import build_model, load_arrays

        directory = Path(directory)
        try:
            config = json.loads((directory / CONFIG).read_text())
            arrays = read_arrays(directory / WEIGHTS)  # a server's threads load models too
        except FileNotFoundError as exc:
            raise AtlasError(f"{directory} is not a model directory (missing {Path(exc.filename).name})") from exc
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            raise AtlasError(f"cannot read the model in {directory}: {exc}") from exc
        arch = config.get("architecture") if isinstance(config, dict) else None
        if not isinstance(arch, dict) or not isinstance(arch.get("arch"), str):
            raise AtlasError(f"the model in {directory} has no architecture in its {CONFIG} "
                             "(an object with 'arch' and its parameters)")
        arch = dict(arch)
        try:
            model = build_model(arch.pop("arch"), **arch)
            load_arrays(model, arrays)
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise AtlasError(f"the model in {directory} does not match its {CONFIG}: "
                             f"{type(exc).__name__}: {exc}") from None
        model.eval()
        return cls(name=config.get("name", directory.name), config=config, model=model,
                   source=directory.resolve())

    @property
    def registry_dir(self) -> str:
        """How the atlas names this model's directory: 'shipped:NAME' for a packaged model."""
        if self.source is not None and self.source.parent == SHIPPED_MODELS.resolve():
            return f"shipped:{self.source.name}"
        return str(self.source) if self.source else ""


def shipped_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The directory of the packaged model ``name``."""
    return SHIPPED_MODELS / name


def is_shipped(name: str) -> bool:
    """Whether a model of this name is packaged with soundatlas."""
    return (shipped_model_dir(name) / CONFIG).is_file()


def resolve_model(atlas, name: str | None) -> tuple[ModelArtifact, ModelRecord | None]:
    """The model called ``name`` in the atlas, or a shipped one (by name or directory path).

    Parameters
    ----------
    atlas : Atlas or None
        Where to look first (None: an atlas not made yet, which has no model of its own).
    name : str or None
        A registered model's name, a shipped model's name or a model directory (None: the
        default model).

    Returns
    -------
    artifact : ModelArtifact
    registration : ModelRecord or None
        Its registration in the atlas (None when not yet registered).

    Raises
    ------
    ParameterError
        When there is no such model (the message lists those there are).
    """
    if name == "" or isinstance(name, str) and not name.strip():  # an unset shell variable
        raise ParameterError(f"model name {name!r} is empty; leave the option out for "
                             f"{DEFAULT_MODEL!r}")
    name = name or DEFAULT_MODEL
    models = atlas.models() if atlas is not None else []
    for m in models:
        if m.name == name:
            return ModelArtifact.load(model_path(atlas, m.dir)), m
    candidates = [Path(name), shipped_model_dir(name)]
    for directory in candidates:
        if (directory / CONFIG).is_file():
            return ModelArtifact.load(directory), None
    known = list(dict.fromkeys([m.name for m in models] + sorted(  # 'default': both, once
        p.name for p in SHIPPED_MODELS.glob("*") if (p / CONFIG).is_file())))
    raise ParameterError(f"no model {name!r} (known: {', '.join(known) or 'none'})")


def model_path(atlas, directory: str) -> Path:
    """The directory a model record names (``ModelRecord.dir``): ``shipped:NAME``, relative to
    the atlas, or absolute."""
    if directory.startswith("shipped:"):
        return SHIPPED_MODELS / directory.split(":", 1)[1]
    p = Path(directory)
    return p if p.is_absolute() else atlas.path / p


def weights_digest(atlas, registration: ModelRecord) -> str:
    """The SHA-256 of a registered model's weights file (a shipped model's or the atlas's own).

    Raises
    ------
    AtlasError
        When the weights file is missing.
    """
    import hashlib

    weights = model_path(atlas, registration.dir) / WEIGHTS
    if not weights.is_file():
        raise AtlasError(f"model {registration.name!r} has no weights at {weights}")
    return hashlib.sha256(weights.read_bytes()).hexdigest()


#: Config keys that say how a model was stored, not what it is: a model registered by the run
#: that trained it lacks them, the same model registered from its folder has them.
STORAGE_KEYS = ("name", "weights_dtype")


def same_model(atlas_a, a: ModelRecord, atlas_b, b: ModelRecord) -> bool:
    """Whether two atlases' registrations are one model, so that their points and vectors may
    be searched together: the same weights file contents, and the same config as each atlas
    registered (but for :data:`STORAGE_KEYS`). Both registrations may name one folder whose
    model has changed since one of them embedded: a shipped model of a later soundatlas
    (``shipped_changed``), or a model trained again in place. Its weights are then today's for
    both, and only the recorded configs tell the versions apart."""
    return model_difference(atlas_a, a, atlas_b, b) is None


def model_difference(atlas_a, a: ModelRecord, atlas_b, b: ModelRecord) -> str | None:
    """What tells two registrations apart (:func:`same_model`), for people: the first config
    entry that differs (``'seed: 5 in A, 0 in B'``), or 'other weights'; None when none does."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if prefix == "" and k in STORAGE_KEYS:
                continue
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    x, y = flat(a.config), flat(b.config)
    for key in sorted(x.keys() | y.keys()):
        if x.get(key) != y.get(key):
            def shown(v):
                text = "absent" if v is None else json.dumps(v, default=str)
                return text if len(text) <= 40 else text[:37] + "..."
            return (f"{key}: {shown(x.get(key))} in {atlas_a.path}, {shown(y.get(key))} in "
                    f"{atlas_b.path}")
    if weights_digest(atlas_a, a) != weights_digest(atlas_b, b):
        return "other weights"
    return None


def embed_from(atlas, other, model: ModelRecord) -> str:
    """The command that embeds ``atlas`` with ``other``'s registered ``model``: by name for a
    shipped model, by its folder for another (``atlas`` does not know its name yet)."""
    import shlex

    what = (model.name if model.dir.startswith("shipped:")
            else str(model_path(other, model.dir).resolve()))
    return (f"soundatlas embed --atlas {shlex.quote(str(atlas.path))} --model "
            f"{shlex.quote(what)}")


def shipped_changed(registration: ModelRecord | None, artifact: ModelArtifact) -> bool:
    """Whether the atlas's points for a shipped model were made by another version of it.

    An atlas registers a shipped model by name (``shipped:NAME``) with the config it had then;
    a later soundatlas may ship another model under the same name (a new ``default``), whose
    points would not sit on the same map as the stored ones.

    Parameters
    ----------
    registration : ModelRecord or None
        The model's registration in the atlas (``resolve_model``'s second value).
    artifact : ModelArtifact
        The model as it loads now.
    """
    return (registration is not None and registration.dir.startswith("shipped:")
            and registration.config != artifact.config)


def check_current(atlas, registration: ModelRecord | None, artifact: ModelArtifact) -> None:
    """Refuse to place new sounds with a shipped model that changed since the atlas was embedded.

    Raises
    ------
    SoundAtlasError
        Naming the command that embeds the atlas again (``shipped_changed``).
    """
    if shipped_changed(registration, artifact):
        raise SoundAtlasError(
            f"the atlas's points for model {artifact.name!r} were made by an earlier version of "
            f"the shipped model; `soundatlas embed --atlas {atlas.path} --model {artifact.name}` "
            "makes them again with this one"
        )


def check_cqt(artifact: ModelArtifact, params: CQTParams) -> None:
    """Refuse a model whose CQT parameters differ from the atlas's.

    Raises
    ------
    SoundAtlasError
        Naming the parameters that differ.
    """
    if artifact.cqt != params:
        theirs, ours = artifact.cqt.to_dict(), params.to_dict()
        diff = ", ".join(f"{k}: model {theirs[k]} vs atlas {ours[k]}" for k in ours if theirs.get(k) != ours[k])
        raise SoundAtlasError(
            f"model {artifact.name!r} was trained on other CQT parameters than this atlas ({diff}); "
            "index the library into an atlas with the model's parameters or train a new model"
        )
