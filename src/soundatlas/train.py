"""``soundatlas train``: learn a map from a neighbourhood, with checkpoints and exact resume.

The pieces are separate (STYLE: pytorch-metric-learning): a neighbourhood (one, or a weighted
:class:`~soundatlas.neighbourhoods.Mixture`) says which windows belong together, the sampler
draws and augments triples from the atlas's training split, the model embeds them, the
contrastive loss compares them, and this trainer only runs the loop: optimiser step,
learning-rate schedule, validation loss at intervals, checkpoints, and a stop with a clear message
when the loss stops being finite (the last good checkpoint is kept). What is particular to a
neighbourhood (its labels, its origin weight, its seed) the trainer asks the neighbourhood.

``init_from`` starts from an existing model's weights, input statistics and architecture instead
of N(0, 0.01): fine-tuning, e.g. with the label-free neighbourhoods on a user's own library.

Resume is exact: a checkpoint holds the weights, the optimiser's state, the sampler's random
state and the iteration, and the learning rate is a pure function of the iteration, so a run
killed and resumed ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from soundatlas.atlas.core import WRITER_LOCK
from soundatlas.checkpoints import (CHECKPOINT, check_finite, config_key, last_good,
                                    load_checkpoint, save_checkpoint)
from soundatlas.errors import CheckpointMismatch, ParameterError, TrainingError  # noqa: F401
from soundatlas.model import native_bf16
from soundatlas.settings import PRESETS, TrainSettings, lr_at, settings_for  # noqa: F401
from soundatlas.text import counted

__all__ = ["TrainSettings", "PRESETS", "TrainingError", "CheckpointMismatch", "train",
           "settings_for", "divergence", "torch_threads"]


@contextlib.contextmanager
def deterministic(device: str):
    """Context manager: run-to-run identical arithmetic on ``device``.

    So that a resumed run ends where an uninterrupted one does: on CUDA, deterministic cuDNN
    convolutions (no autotuning) and deterministic algorithms where torch has them (a warning
    names any op that has none); the CPU kernels used here are deterministic already. Restores
    the previous settings after.

    Parameters
    ----------
    device : {'cpu', 'cuda'}
        The device the run computes on; only 'cuda' changes anything.

    Yields
    ------
    None
    """
    if device != "cuda":
        yield
        return
    # cuBLAS is only deterministic with a fixed workspace; read when CUDA starts in this process
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def resolve_precision(settings: TrainSettings, device: str = "cpu") -> str:
    """The precision a run uses: ``auto`` becomes bf16 where it is native, fp32 elsewhere.

    Parameters
    ----------
    settings : TrainSettings
        Its ``precision`` is fp32, bf16 or auto.
    device : {'cpu', 'cuda'}, default='cpu'
        Where auto asks :func:`native_bf16`.

    Returns
    -------
    {'fp32', 'bf16'}
    """
    if settings.precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return settings.precision


def resolve_fused_pool(settings: TrainSettings, device: str = "cpu") -> bool:
    """Whether a run uses the fused tanh + max-pool step: ``auto`` means on the CPU only.

    Parameters
    ----------
    settings : TrainSettings
        The run's; ``fused_pool`` says on, off or auto.
    device : {'cpu', 'cuda'}, default='cpu'
        The run's device, for auto.

    Returns
    -------
    bool
    """
    if settings.fused_pool == "auto":
        return device == "cpu"
    return settings.fused_pool == "on"


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes
    ----------
    name : str
        The model's name.
    directory : pathlib.Path
        The run's folder (checkpoint and, once finished, the model).
    iterations : int
        Iterations done so far in the run (all calls together).
    seconds, cpu_seconds : float
        Wall-clock and CPU time of the run so far (all calls together).
    history : list of dict
        One entry per validation: 'iteration', 'train_loss' (moving average), 'valid_loss'
        (None without validation triples), 'lr', 'seconds', 'cpu_seconds'.
    resumed_from : int or None
        The iteration the run resumed at (None: started afresh).
    resume_note : str or None
        With ``resume``, what it resumed from, in a sentence: the iteration, or that there was
        no checkpoint to resume, and whether another thread count makes the weights differ
        from an uninterrupted run's.
    neighbourhood : dict
        What the neighbourhood kept and left out (its ``summary()``).
    time_limited : bool
        Whether ``time_limit`` ended the run, the model finished at ``iterations``.
    """

    name: str
    directory: Path
    iterations: int
    seconds: float
    cpu_seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    neighbourhood: dict = field(default_factory=dict)  # what the neighbourhood kept and left out
    resume_note: str | None = None
    time_limited: bool = False  # ended by ``time_limit``, finished at ``iterations``


#: ``progress(done, total, info)``, called by :func:`train` after every iteration.
Progress = Callable[[int, int, dict], None]


def train(
    atlas,
    *,
    neighbourhood,
    label: str | None = None,
    preset: str = "fast",
    settings: TrainSettings | None = None,
    seed: int = 0,
    name: str | None = None,
    arch: str | None = None,
    dims: int | None = None,
    pitch_axis: bool = False,
    resume: bool = False,
    device: str = "cpu",
    progress: Progress | None = None,
    command: str | None = None,
    stop_after: int | None = None,
    init_from=None,
    time_limit: float | None = None,
    replace: bool = False,
) -> TrainResult:
    """Train a model on ``atlas``'s training split and register it in the atlas.

    The model and its checkpoints live in ``atlas.path / "models" / name``; one run of a model
    at a time (a lock in that folder), runs of other models beside it. A fixed set of
    validation triples, drawn from the validation split by a copy of the neighbourhood, gives
    the validation loss (none when the split is too small for the neighbourhood).

    Parameters
    ----------
    atlas : Atlas
        The atlas to read the samples from and register the model in.
    neighbourhood : Neighbourhood or str
        A :class:`~soundatlas.neighbourhoods.Neighbourhood` (a ``Mixture`` for several), or a
        command-line spec read by :func:`~soundatlas.neighbourhoods.parse_neighbourhood` with
        ``label`` and ``seed`` (e.g. ``"instrument"``,
        ``"instrument:1,label:family:1,augment-pair:0.5"``). Mixture parts that these data
        cannot serve are left out and listed in the result's ``neighbourhood["skipped"]``.
    label : str, optional
        The label column of a neighbourhood named by a spec (as ``--label`` sets it).
    preset : str, default='fast'
        The preset whose settings are used when ``settings`` is None.
    settings : TrainSettings, optional
        The settings (over ``preset``).
    seed : int, default=0
        Seeds the weights, the sampler, the validation triples and the neighbourhood's
        ``seed_param``.
    name : str, optional
        The model's name (default ``{neighbourhood slug}-{preset}-s{seed}``;
        ``atlas.models.check_model_name`` says which names are refused).
    arch : str, optional
        The network (default ``paper``).
    dims : int, optional
        Output dimensions (default 3).
    pitch_axis : bool, default=False
        The last dimension is each window's measured pitch (``PaperNet(pitch_axis=True)``);
        the network learns the others. Not in the paper.
    resume : bool, default=False
        Continue from the run's checkpoint when there is one; without it, a checkpoint there
        is deleted and the run starts afresh.
    device : {'cpu', 'cuda'}, default='cpu'
    progress : callable, optional
        Called after every iteration as ``progress(done, total, info)``, ``info`` holding
        'loss' (moving average), 'lr', 'triples_per_s' and 'valid_loss' (the latest, or None).
    command : str, optional
        The command line recorded in the model's config (default: this process's).
    stop_after : int, optional
        End the process's work after this many iterations of this call (the checkpoint is
        written, the run stays resumable): for tests and for splitting long runs.
    init_from : str, path or ModelArtifact, optional
        A model (an atlas model's or shipped model's name, a model directory, or a
        ModelArtifact) whose weights, input statistics and architecture the run starts from;
        its CQT parameters must be the atlas's.
    time_limit : float, optional
        Seconds of training steps this call may take: when they are spent, the run ends at
        the step reached and the model is saved with that many iterations, the same model a
        run with ``iterations`` set to them makes (so not with the cosine schedule, whose rates
        depend on the total).
    replace : bool, default=False
        Train a model under the name of one the atlas holds, in its place (its embeddings are
        dropped). Without it (or ``resume``) such a name is refused, so that a run never
        throws away a model, and its map, by a name it happened to take.

    Returns
    -------
    TrainResult
        When the run has done all its iterations (or ``time_limit`` ended it), the model is
        saved and registered in the atlas; when ``stop_after`` ended it earlier, it is only
        checkpointed.

    Raises
    ------
    ParameterError
        For settings that cannot work, an unknown or unavailable device, ``label`` with a
        Neighbourhood object, an ``anchor`` without ``init_from``, an atlas without training
        samples, ``arch`` or ``dims`` other than ``init_from``'s, a ``time_limit`` that is not a
        positive number or comes with the cosine schedule, or data the neighbourhood cannot be
        fitted on; a name the atlas's models or the shipped models hold (see ``replace``).
    TrainingError
        When the loss becomes non-finite (the last good checkpoint is kept), or the checkpoint
        to resume from was made with other settings.
    AtlasError
        When another process is training the same model in this atlas.
    """
    from soundatlas.atlas.models import check_model_name

    settings = (settings or settings_for(preset)).validate()
    if device not in {"cpu", "cuda"}:
        raise ParameterError(f"device={device!r} must be 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' asked for, but torch sees no CUDA device here")
    if device == "cuda":  # before CUDA starts: cuBLAS reads it then (see ``deterministic``)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    nb = check_arguments(neighbourhood, label=label, seed=seed, settings=settings,
                         init_from=init_from, name=name)
    if time_limit is not None:
        if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit)
                and time_limit > 0):
            raise ParameterError(f"time_limit={time_limit!r} must be a positive number of seconds")
        if settings.schedule == "cosine":
            raise ParameterError("a time limit ends the run at a step it cannot know in advance, "
                                 "and the cosine schedule's rates depend on the last step: "
                                 "give iterations instead")
    base = _base_model(atlas, init_from) if init_from is not None else None
    arch_params = _architecture(atlas, base, arch, dims, settings, pitch_axis)
    if base is not None:
        # dataclasses.replace: the parameter ``replace`` hides the name here
        settings = dataclasses.replace(settings,
                                       standardize=bool(arch_params.get("standardize", False)))
    name = check_model_name(f"{nb.slug}-{settings.preset}-s{seed}" if name is None else name)
    run_dir = atlas.path / "models" / name
    _check_name_free(atlas, name, run_dir, resume=resume, replace=replace)
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        # one run per model at a time; other models, and an index, may run beside it
        with model_lock(run_dir, f"the model {name!r} of the atlas at {atlas.path}"), \
                torch_threads(settings.threads):
            return _train_run(atlas, nb, settings, seed, name, run_dir, base, arch_params,
                              label=label, command=command, resume=resume, device=device,
                              progress=progress, stop_after=stop_after, time_limit=time_limit)
    except BaseException:
        # a run that failed before its first checkpoint leaves no folder holding only its lock
        if made and {p.name for p in run_dir.iterdir()} <= {WRITER_LOCK}:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's thread count set to ``n`` (None: left as it is) inside the block, and set back
    after it: a run's ``threads`` are the run's, and a caller's later torch work (embedding, a
    second run) keeps the threads it had."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_arguments(neighbourhood, *, label: str | None = None, seed: int = 0,
                    settings: TrainSettings, init_from=None, name: str | None = None):
    """What :func:`train` is asked, checked without the atlas: the neighbourhood (parsed from
    a spec with ``label`` and ``seed``), a part that needs a starting model (``teacher-knn``,
    ``teacher-map``) or an anchor without one, and a shipped model's name. The command line
    checks these before the work, as misuse.

    Returns
    -------
    Neighbourhood
        The neighbourhood, parsed.

    Raises
    ------
    ParameterError
        Naming what cannot work.
    """
    from soundatlas.neighbourhoods import Mixture, Neighbourhood, parse_neighbourhood
    from soundatlas.neighbourhoods.knn import TeacherKNN

    if isinstance(neighbourhood, Neighbourhood):
        if label is not None:
            raise ParameterError(f"label={label!r} applies to a neighbourhood named by a spec; "
                                 f"{neighbourhood!r} has its labels already")
        nb = neighbourhood
    else:
        nb = parse_neighbourhood(neighbourhood, label=label, seed=seed)
    if init_from is None:
        parts = [p for p, _ in nb.parts] if isinstance(nb, Mixture) else [nb]
        taught = [p.name for p in parts if isinstance(p, TeacherKNN)]
        if taught:
            raise ParameterError(f"{taught[0]} keeps the neighbours of the model a run starts "
                                 "from: give one (train --init-from MODEL, or adapt)")
        if settings.anchor > 0:
            raise ParameterError(f"anchor={settings.anchor:g} holds the points near a starting "
                                 "model's, and there is none: give init_from (--init-from)")
    if name is not None:
        _refuse_shipped(name)
    return nb


def _refuse_shipped(name: str) -> None:
    """A shipped model's name is never a new model's (ParameterError)."""
    from soundatlas.artifact import is_shipped

    if is_shipped(name):
        raise ParameterError(f"{name!r} is the name of a model shipped with soundatlas: give "
                             "the new model another name (--name)")


def _check_name_free(atlas, name: str, run_dir: Path, *, resume: bool, replace: bool) -> None:
    """Refuse a name that would replace a model without being asked to (module doc of
    :func:`train`'s ``replace``): a shipped model's always, an atlas model's unless ``replace``
    or ``resume`` (of the run in its folder) says so."""
    _refuse_shipped(name)
    record = atlas.find_model(name)
    if record is None or replace:
        return
    if not resume:
        raise ParameterError(
            f"the atlas already has a model named {name!r} ({record.n_embedded} samples "
            "embedded with it): give the new one another name (--name), --replace to train it "
            "again in its place (its embeddings go), or --resume to go on with its run")
    if not (run_dir / CHECKPOINT).is_file():
        raise ParameterError(f"the model {name!r} has no checkpoint in {run_dir} to resume "
                             "from: --replace trains it again in its place (its embeddings go)")


def divergence(valid_losses: list[float | None]) -> str | None:
    """A warning where the validation loss ended more than 100 times where it began (a run that
    diverged, a learning rate too high for it: the model is saved all the same), else None;
    ``valid_losses`` in the order they were logged, None where one was not measured."""
    losses = [v for v in valid_losses if v is not None]
    if len(losses) < 2 or not losses[-1] > 100 * max(losses[0], 1e-12):
        return None
    return (f"the validation loss rose from {losses[0]:.4g} to {losses[-1]:.4g}: the run "
            "diverged; train it again (--replace) with a lower --lr (fine-tuning a model "
            "wants about 0.001)")


def _registered_from(atlas, name: str, run_dir: Path) -> bool:
    """Whether the atlas's model ``name`` is the one saved in ``run_dir``."""
    record = atlas.find_model(name)
    return record is not None and record.dir == str(run_dir.relative_to(atlas.path))


def _train_run(atlas, nb, settings, seed, name, run_dir, base, arch_params, *, label, command,
               resume, device, progress, stop_after, time_limit=None) -> TrainResult:
    """The run :func:`train` has set up, under the model's lock: fit, train, checkpoint, save."""
    from soundatlas.artifact import ModelArtifact
    from soundatlas.frames import absent_labels
    from soundatlas.loss import ContrastiveLoss, anchor_loss
    from soundatlas.model import build_model, init_weights
    from soundatlas.sampling import TrainingData, TripleSampler

    split = atlas.splits(seed=None)
    train_ids = sorted(i for i, s in split.items() if s == "train")
    valid_ids = sorted(i for i, s in split.items() if s == "valid")
    if not train_ids:
        raise ParameterError("the atlas has no training samples; index a library first")
    absent = absent_labels(atlas, nb.label_keys)
    if absent:  # a mixture would leave the part out: a typo must not go unnoticed (nor wait)
        raise ParameterError(f"{next(iter(absent.values()))} (named by -n {nb.spec}): correct "
                             "it, or leave out the part that names it")
    for _ in atlas.each_features(atlas.samples(train_ids + valid_ids)):
        pass  # every damaged feature file of both splits named now, not one split per run
    data = TrainingData.from_atlas(atlas, train_ids, label_keys=nb.label_keys,
                                   missing_labels="skip")
    if base is not None:
        from soundatlas.embed import prediction_noise

        nb.set_teacher(base.model, noise=prediction_noise(base))
    try:
        nb.fit(data)
    except ParameterError as exc:
        if not data.suggested_only:
            raise
        unread = ", ".join(f"{counted(n, 'sample')} of {key!r}" for key, n in
                           data.suggested_only.items())
        raise ParameterError(f"{exc}. Training does not read labels suggested from the map that "
                             f"nobody accepted ({unread}): accept them with `soundatlas tag "
                             "--add KEY:VALUE`, or with y in the page") from exc
    sampler = TripleSampler(data, nb, batch_size=settings.batch_size, seed=seed,
                            noise=(settings.noise_mean, settings.noise_std),
                            noise_rng=settings.noise_rng, augment=settings.augment)
    # a pitch axis reads its height from the windows' centre frames before the input noise, as
    # embed does: the sampler gives them beside the noised windows
    heights = bool(arch_params.get("pitch_axis"))
    valid_batches = _validation_batches(atlas, valid_ids, nb, settings, seed, heights)

    torch.manual_seed(seed)
    model = build_model(**arch_params)
    if base is not None:
        model.load_state_dict(base.model.state_dict())
    else:
        init_weights(model, generator=torch.Generator().manual_seed(seed))
        if settings.standardize:
            model.set_input_stats(*_input_stats(data, nb, settings, seed))
    # channels_last: the same arithmetic, ~1.4x faster convolutions on the CPU (oneDNN)
    model.to(device=device, memory_format=torch.channels_last)
    anchor = None  # the starting model, frozen: where settings.anchor holds the points
    if settings.anchor > 0:
        anchor = build_model(**arch_params)
        anchor.load_state_dict(base.model.state_dict())
        anchor.to(device=device, memory_format=torch.channels_last).eval().requires_grad_(False)
    origin = settings.origin_weight
    if origin is None:
        origin = nb.origin_weight
    loss_fn = ContrastiveLoss(m_p=settings.m_p, m_n=settings.m_n, origin_weight=origin)
    optimizer = _optimizer(model, settings)
    precision = resolve_precision(settings, device)
    fused_pool = resolve_fused_pool(settings, device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16,
                              enabled=precision == "bf16")

    config = {
        "architecture": model.get_params(),
        "cqt": atlas.cqt_params.to_dict(),
        "neighbourhood": nb.to_model_config(),
        "label": label,
        "preset": settings.preset,
        "settings": asdict(replace(settings, origin_weight=origin)),
        "seed": seed,
        "split": {"seed": int(atlas.meta("split_seed") or 0), "n_train": len(train_ids),
                  "n_valid": len(valid_ids)},
        "data": {"fingerprint": _fingerprint(atlas, train_ids), "n_train_frames": int(len(data.frames)),
                 "n_excluded": int(getattr(nb, "n_excluded_", 0)), "neighbourhood": nb.summary()},
        "command": command or _command_line(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "fused_pool": fused_pool,
    }
    if base is not None:
        # how the base was made, so that a model's config holds its whole lineage
        made_by = {k: base.config[k] for k in ("command", "init_from", "pitch_axis")
                   if k in base.config}
        config["init_from"] = {"name": base.name, "weights": _weights_digest(base.model),
                               "made_by": made_by}

    start_it, history, resumed_from, note = 0, [], None, None
    if resume:
        state = load_checkpoint(run_dir, model, optimizer, sampler, config_key(config))
        if state is not None:
            start_it, history, resumed_from = state["iteration"], state["history"], state["iteration"]
            note = (f"resumed at iteration {start_it}" if start_it < settings.iterations else
                    f"finished at iteration {start_it} already: its model is kept as it is")
            was, now = state.get("threads"), torch.get_num_threads()
            if was is not None and was != now:
                note += (f" with {now} threads, where the run before used {was}: the weights "
                         "will differ in float rounding from an uninterrupted run's (the same "
                         f"--threads {was} resumes to them exactly)")
        else:
            note = f"no checkpoint in {run_dir} to resume: started at iteration 0"
    else:
        state = None
        (run_dir / CHECKPOINT).unlink(missing_ok=True)

    t0, c0 = time.perf_counter(), time.process_time()
    prev_seconds = history[-1]["seconds"] if history else 0.0
    prev_cpu = history[-1]["cpu_seconds"] if history else 0.0
    ema = state.get("ema") if state else None  # the loss's moving average goes on too
    end = settings.iterations if stop_after is None else min(settings.iterations, start_it + stop_after)
    it, timed_out = start_it, False
    model.train()
    with deterministic(device):
        for it in range(start_it, end):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(settings, it)
            a, p, n, *centres = (t.to(device) for t in sampler.next_batch(with_centres=heights))
            x = torch.cat([a, p, n])
            heights_of = centres[0] if centres else None  # the height, read noise-free
            with autocast:
                z = model(x, fused_pool=fused_pool, height_frames=heights_of)
            za, zp, zn = z.float().split(len(a))
            loss = loss_fn(za, zp, zn)
            if anchor is not None:  # the same windows, noise and all, through the start model
                with torch.no_grad(), autocast:
                    z_base = anchor(x, fused_pool=fused_pool, height_frames=heights_of)
                loss = loss + settings.anchor * anchor_loss(z.float(), z_base.float(),
                                                            settings.m_n or 1.0)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} at iteration {it}; "
                                    f"{last_good(run_dir)}; try a lower learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            done = it + 1
            if done % settings.valid_every == 0 or done == settings.iterations:
                history.append(_log_entry(model, loss_fn, valid_batches, done, ema, settings, device,
                                          prev_seconds + time.perf_counter() - t0,
                                          prev_cpu + time.process_time() - c0))
                model.train()
            if progress:
                elapsed = time.perf_counter() - t0
                progress(done, settings.iterations, {
                    "loss": ema, "lr": lr_at(settings, it),
                    "triples_per_s": (done - start_it) * settings.batch_size / max(elapsed, 1e-9),
                    "valid_loss": history[-1]["valid_loss"] if history else None,
                })
            if done % settings.checkpoint_every == 0 or done == end:
                check_finite(model, done, run_dir)
                save_checkpoint(run_dir, model, optimizer, sampler, done, history,
                                 config_key(config), ema)
            if time_limit is not None and done < end and time.perf_counter() - t0 >= time_limit:
                timed_out = True
                break
    seconds = prev_seconds + time.perf_counter() - t0
    cpu_seconds = prev_cpu + time.process_time() - c0
    done = it + 1 if end > start_it else start_it
    if timed_out:  # the run is the one whose last step this is: record it so
        settings = replace(settings, iterations=done)
        config["settings"] = asdict(replace(settings, origin_weight=origin))
        if not history or history[-1]["iteration"] != done:
            history.append(_log_entry(model, loss_fn, valid_batches, done, ema, settings, device,
                                      seconds, cpu_seconds))
    result = TrainResult(name, run_dir, done, seconds, cpu_seconds, history, resumed_from,
                         nb.summary(), time_limited=timed_out, resume_note=note)
    if done < settings.iterations:
        return result  # stopped early on purpose: resumable, not yet a model
    if start_it >= end and _registered_from(atlas, name, run_dir):
        return result  # a finished run resumed: its model stands, and so do its embeddings
    check_finite(model, done, run_dir)  # a time limit may end a run between checkpoints
    model.eval()
    config["training"] = {"iterations": done, "seconds": round(seconds, 1),
                          "cpu_seconds": round(cpu_seconds, 1), "history": history}
    artifact = ModelArtifact(name=name, config=config, model=model.cpu())
    artifact.save(run_dir)
    atlas.register_model(name, str(run_dir.relative_to(atlas.path)), artifact.config)
    return result


@contextlib.contextmanager
def model_lock(run_dir: Path, what: str):
    """Hold the lock of one model's folder (``MODEL/writer.lock``) for a ``with`` block."""
    from soundatlas.atlas.core import lock_writer, unlock_writer

    lock_writer(run_dir, what=what)
    try:
        yield
    finally:
        unlock_writer(run_dir)


def _base_model(atlas, init_from):
    """The ModelArtifact a fine-tuning run starts from; refused when its CQT is not the atlas's."""
    from soundatlas.artifact import ModelArtifact, resolve_model
    from soundatlas.embed import check_features

    base = init_from if isinstance(init_from, ModelArtifact) else \
        resolve_model(atlas, str(init_from))[0]
    check_features(atlas, base)  # names the command when only the kernel differs
    return base


def _architecture(atlas, base, arch, dims, settings, pitch_axis=False) -> dict:
    """build_model's arguments: the base model's when fine-tuning (``arch``/``dims`` must agree,
    and a pitch axis asked for must be there), else ``arch`` (paper) with the atlas's bins,
    ``dims`` (3), the settings' standardize and the pitch axis when asked for."""
    if base is not None:
        params = dict(base.config["architecture"])
        for key, asked in (("arch", arch), ("dims", dims), ("pitch_axis", pitch_axis or None)):
            if asked is not None and asked != params.get(key):
                raise ParameterError(f"{key}={asked!r}, but the model to start from, "
                                     f"{base.name!r}, has {key}={params.get(key)!r}")
        return params
    params = {"arch": arch or "paper", "n_bins": atlas.cqt_params.n_bins, "dims": dims or 3}
    if settings.standardize:
        params["standardize"] = True
    if pitch_axis:
        params.update(pitch_axis=True, bins_per_octave=atlas.cqt_params.bins_per_octave)
    return params


def _weights_digest(model) -> str:
    """A hash of a model's weights: which model a fine-tuning run started from."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _input_stats(data, nb, settings, seed, n_batches: int = 32):
    """Per-bin mean and standard deviation of noised (and augmented) training windows
    (deterministic)."""
    from soundatlas.sampling import TripleSampler

    sampler = TripleSampler(data, nb, batch_size=64, seed=seed + 99,
                            noise=(settings.noise_mean, settings.noise_std),
                            augment=settings.augment)
    x = torch.cat([torch.cat(sampler.next_batch()) for _ in range(n_batches)])
    x = x.reshape(-1, x.shape[-1]).double()
    return x.mean(dim=0).float(), x.std(dim=0).float()


def _validation_batches(atlas, valid_ids, nb, settings, seed, heights=False):
    """A fixed set of validation triples (the same at every evaluation and after resume), drawn
    by a fresh copy of the training neighbourhood fitted on the validation split."""
    from soundatlas.sampling import TrainingData, TripleSampler

    if not valid_ids:
        return []
    data = TrainingData.from_atlas(atlas, valid_ids, label_keys=nb.label_keys,
                                   missing_labels="skip")
    nb = nb.clone()
    try:
        nb.fit(data)
    except ParameterError:
        return []  # too few validation samples for this neighbourhood: no validation loss
    sampler = TripleSampler(data, nb, batch_size=settings.batch_size, seed=seed + 10_007,
                            noise=(settings.noise_mean, settings.noise_std),
                            augment=settings.augment)
    return [sampler.next_batch(with_centres=heights) for _ in range(settings.n_valid_batches)]


@torch.no_grad()
def _log_entry(model, loss_fn, valid_batches, iteration, ema, settings, device, seconds, cpu):
    model.eval()
    valid = None
    if valid_batches:
        losses = []
        for a, p, n, *centres in valid_batches:
            z = model(torch.cat([a, p, n]).to(device),
                      height_frames=centres[0].to(device) if centres else None)
            losses.append(loss_fn(*z.split(len(a))).item())
        valid = float(np.mean(losses))
    return {"iteration": iteration, "train_loss": ema, "valid_loss": valid,
            "lr": lr_at(settings, iteration - 1), "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2)}


def _optimizer(model, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    return torch.optim.Adam(model.parameters(), lr=settings.lr)


# -- checkpoints (npz + json; no pickle) -----------------------------------------------------------


def _fingerprint(atlas, ids: list[int]) -> str:
    """A hash of the training files' content hashes: the same data gives the same fingerprint."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    hashes = dict((sid, digest) for sid, digest, _ in atlas.iter_ids_hashes())
    for sid in ids:
        h.update(hashes[sid].encode())
    return h.hexdigest()


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["soundatlas", *sys.argv[1:]]) if sys.argv else ""
