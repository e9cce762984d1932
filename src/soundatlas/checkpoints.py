"""A training run's checkpoint (``MODEL/checkpoint.npz``): written atomically, read back into
the model, optimiser and sampler so that a resumed run ends where an uninterrupted one does, and
refused (:class:`~soundatlas.errors.CheckpointMismatch`) where it belongs to another run. Also
what a run that goes wrong says it keeps (:func:`last_good`, :func:`check_finite`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from soundatlas.errors import CheckpointMismatch, TrainingError

__all__ = ["CHECKPOINT", "save_checkpoint", "load_checkpoint", "check_finite", "last_good",
           "checkpoint_iteration", "config_key", "run_differences"]

#: The checkpoint's file name in a model's folder.
CHECKPOINT = "checkpoint.npz"


def save_checkpoint(run_dir: Path, model, optimizer, sampler, iteration, history, key,
                    ema: float | None = None) -> None:
    """Write ``run_dir/checkpoint.npz`` at once (a temporary file renamed over it): the model's
    and the optimiser's state, the sampler's, the iteration, the history, the run's ``key``
    (:func:`config_key`) and the training loss's moving average ``ema``."""
    from soundatlas.model import state_to_arrays

    run_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in state_to_arrays(model).items()}
    opt_state = optimizer.state_dict()
    opt_meta: dict = {"param_groups": opt_state["param_groups"], "state": {}}
    for pid, st in opt_state["state"].items():
        opt_meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                arrays[f"opt/{pid}/{k}"] = v.detach().cpu().numpy()
            else:
                opt_meta["state"][str(pid)][k] = v
    # the threads, beside the key: another count may resume the run, but its float sums come
    # in another order, so the weights then match no uninterrupted run's (the resume says so)
    meta = {"iteration": iteration, "history": history, "optimizer": opt_meta,
            "sampler": sampler.state(), "config_key": key, "ema": ema,
            "threads": torch.get_num_threads()}
    # one file, replaced atomically: the JSON state travels inside the npz as bytes
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = run_dir / "checkpoint.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path, model, optimizer, sampler, key: dict) -> dict | None:
    """Restore the checkpoint in ``run_dir`` into ``model``, ``optimizer`` and ``sampler``; its
    meta (iteration, history, ema), or None when there is none. CheckpointMismatch when it
    belongs to another run than ``key`` (other settings, or other training samples)."""
    from soundatlas.model import load_arrays

    if not (run_dir / CHECKPOINT).is_file():
        return None
    with np.load(run_dir / CHECKPOINT, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("meta.json").tobytes())
    differ = run_differences(meta["config_key"], key)
    if differ and all(d.startswith("data:") for d in differ):
        raise CheckpointMismatch(f"the checkpoint in {run_dir} was made on other training "
                                 "samples "
                            "(files were indexed, changed or removed since): a resumed run "
                            "would not end where an uninterrupted one does; train again "
                            "(--replace where the model is registered, or another --name)")
    if differ:
        raise CheckpointMismatch(f"the checkpoint in {run_dir} was made with other settings "
                            f"({'; '.join(differ)}); resume with those, or train under "
                            "another --name or without --resume")
    load_arrays(model, {k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    opt_meta = meta["optimizer"]
    state = {}
    for pid, st in opt_meta["state"].items():
        state[int(pid)] = dict(st)
    for k, v in arrays.items():
        if k.startswith("opt/"):
            _, pid, key = k.split("/", 2)
            state.setdefault(int(pid), {})[key] = torch.from_numpy(v)
    optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    sampler.set_state(meta["sampler"])
    return meta


def check_finite(model, done: int, run_dir: Path) -> None:
    """TrainingError where a weight stopped being finite (before a checkpoint or the model is
    written: they would keep the damage, or the writer refuse it in its own words)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingError(f"the weights became non-finite by iteration {done}; "
                            f"{last_good(run_dir)}; try a lower learning rate")


def last_good(run_dir: Path) -> str:
    """What a run that went wrong keeps: its last checkpoint, or none."""
    at = checkpoint_iteration(run_dir)
    if at is None:
        return "no checkpoint was written before it"
    return f"the last good checkpoint (iteration {at}) is kept in {run_dir}"


def checkpoint_iteration(run_dir: Path) -> int | None:
    """The iteration the checkpoint in ``run_dir`` was written at (None: none, or unreadable)."""
    try:
        with np.load(run_dir / CHECKPOINT, allow_pickle=False) as npz:
            return json.loads(npz["meta.json"].tobytes())["iteration"]
    except (OSError, ValueError, KeyError):
        return None


def config_key(config: dict) -> dict:
    """What makes a run the run it is, from a model's ``config``: a checkpoint holds it, and
    resuming needs the same (:func:`run_differences`); plain JSON values."""
    keep = {k: config[k] for k in ("architecture", "cqt", "neighbourhood", "label", "settings",
                                   "seed")}
    start = config.get("init_from")  # the base's weights; its lineage is a record only
    keep["init_from"] = start and {k: start[k] for k in ("name", "weights")}
    keep["data"] = config["data"]["fingerprint"]
    return json.loads(json.dumps(keep, default=str))


#: Settings added after checkpoints were first written, with the value a checkpoint that
#: does not name them was made with (what the run did before the setting existed).
_IMPLIED_BEFORE = {"settings.anchor": 0.0}


def run_differences(stored: dict, current: dict) -> list[str]:
    """How a checkpoint's run differs from this one: ``'KEY: STORED in the checkpoint,
    CURRENT here'`` for each setting that differs (none: the checkpoint belongs to this run).

    Settings are compared where both know them (a newer soundatlas may add settings; their
    defaults must not orphan old checkpoints), and where the checkpoint predates a setting
    that changes the run, by the value it implied (``_IMPLIED_BEFORE``)."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out[f"{prefix}{k}"] = "{}"  # a setting that is a dict here and None there differs
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    # how the work is spread and logged does not change the run
    free = {"settings.threads", "settings.valid_every", "settings.checkpoint_every"}
    a, b = flat(stored), flat(current)
    a.update({k: v for k, v in _IMPLIED_BEFORE.items() if k not in a and k in b})
    return [f"{k}: {a[k]!r} in the checkpoint, {b[k]!r} here"
            for k in sorted((a.keys() & b.keys()) - free) if a[k] != b[k]]
