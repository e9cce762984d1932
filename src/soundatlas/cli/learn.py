"""Commands that learn maps and place samples on them: ``train``, ``embed``, ``models``,
``map``, ``adapt``.

``train``'s setting flags are generated from ``TrainSettings`` (:mod:`soundatlas.cli.train_flags`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from soundatlas.adapt import AdaptSettings
from soundatlas.cli.common import (
    ATLAS,
    EMBED_DEVICE,
    EMBED_PRECISION,
    EXIT_OK,
    SCHEDULER,
    SEED,
    THREADS,
    UsageError,
    add_options,
    as_dict,
    atlas_dir,
    checked,
    int_range,
    nonnegative_float,
    open_atlas,
    positive_float,
    positive_int,
    print_json,
    progress_bar,
    shown,
)
from soundatlas.cli.library import (
    INDEX_OPTIONS,
    executor_for,
    nothing_indexed,
    print_index_summary,
    run_index,
)
from soundatlas.cli.train_flags import SettingFlags, train_settings
from soundatlas.errors import AtlasError, SoundAtlasError
from soundatlas.text import counted

#: adapt's defaults, read from AdaptSettings' fields (building one would load torch).
_ADAPT_DEFAULTS = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(AdaptSettings)})

__all__ = ["register", "cmd_train", "cmd_embed", "cmd_models", "cmd_map", "cmd_adapt"]


# -- train ---------------------------------------------------------------------------------------


@checked
def _neighbourhood_spec(text: str) -> str:
    """``train -n``: checked here, so a bad one is a usage error naming the option."""
    from soundatlas.neighbourhoods import parse_neighbourhood

    parse_neighbourhood(text)
    return text


def _resume_or_replace(args: argparse.Namespace) -> None:
    """``--resume`` goes on with a run, ``--replace`` starts over in an old one's place: one."""
    if args.resume and args.replace:
        raise UsageError("--resume goes on with the run and --replace starts one over in its "
                         "place: give one of them")


@checked
def _model_name(text: str) -> str:
    """``--name`` of a model to make: checked here, so a bad one (empty, '../x') is misuse."""
    from soundatlas.atlas.models import check_model_name

    return check_model_name(text)


def _add_train(sub, parents) -> None:
    t = sub.add_parser("train", parents=parents, help="learn a map from a neighbourhood",
                       description="Train the network on the atlas's training split with triples "
                       "drawn from a neighbourhood; checkpoints as it goes; the model is saved "
                       "and registered in the atlas.")
    settings = SettingFlags(t)  # the TrainSettings flags, among the others in --help's order
    add_options(t, ATLAS)
    t.add_argument("--neighbourhood", "-n", required=True, metavar="SPEC",
                   type=_neighbourhood_spec,
                   help="input-knn | instrument | pitch | instrument-pitch | instrument-pitch-2 | "
                   "pitch-within (instrument-pitch-2 with negatives of the same instrument) | "
                   "label:KEY (any label column, e.g. label:family; A+B the pair of two, e.g. "
                   "instrument-pitch-2:bank+instrument: same instrument from the same maker) | "
                   "augment-pair (the same sound under two augmentations) | teacher-knn, "
                   "teacher-map (neighbours in the --init-from model's hidden layer, on its "
                   "map); several at once as a weighted mixture, NAME:WEIGHT,..., e.g. "
                   "instrument:1,label:family:1,input-knn:0.5,"
                   "augment-pair:0.5 (each triple's part drawn by weight; a part these data "
                   "cannot serve is left out with a message)")
    t.add_argument("--label", metavar="KEY",
                   help="label column playing the instrument's part (e.g. 'folder'; default: "
                   "instrument); a single neighbourhood only")
    settings.add("augment")
    t.add_argument("--init-from", metavar="MODEL",
                   help="start from this model's weights, input statistics and architecture "
                   "(a model name or directory) instead of a random network: fine-tuning")
    settings.add("preset", "iterations", "lr", "batch_size")
    t.add_argument("--dims", type=int_range(1, 1024), metavar="D",
                   help="output dimensions (default: 3, or --init-from's)")
    t.add_argument("--pitch-axis", action="store_true",
                   help="the last dimension is each window's measured pitch (harmonic "
                   "summation over the CQT), the network learns the others: a timbre plane "
                   "under a pitch height (not in the paper)")
    add_options(t, SEED)
    t.add_argument("--name", metavar="NAME", type=_model_name,
                   help="model name (default: NEIGHBOURHOOD-PRESET-sSEED)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint of the same name and settings")
    t.add_argument("--replace", action="store_true",
                   help="train under the name of a model the atlas holds, in its place (its "
                   "embeddings are dropped); without it such a name is refused")
    t.add_argument("--stop-after", type=positive_int, metavar="N",
                   help="stop (resumable) after N iterations of this invocation")
    settings.add("checkpoint_every", "valid_every", "threads")
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to train (default: cpu)")
    settings.add_rest()
    t.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """``soundatlas train``: train a model on the atlas and say how it went."""
    from soundatlas.errors import ParameterError
    from soundatlas.train import check_arguments, divergence, train

    _resume_or_replace(args)
    try:
        settings = train_settings(args)
        check_arguments(args.neighbourhood, label=args.label, seed=args.seed, settings=settings,
                        init_from=args.init_from, name=args.name)
    except ParameterError as exc:  # flags that cannot work together (or at all): misuse
        raise UsageError(str(exc)) from None
    # no writer lock on the atlas: train writes no array file and locks its model's folder
    with open_atlas(args, write=True, tidy=False) as atlas, \
            progress_bar(args, desc=f"training {args.neighbourhood}", unit="it") as bar:

        def progress(done, total, stats):
            shown = {"loss": f"{stats['loss']:.4f}", "triples/s": f"{stats['triples_per_s']:.0f}"}
            if stats.get("valid_loss") is not None:
                shown["valid"] = f"{stats['valid_loss']:.4f}"
            bar(done, total, **shown)

        result = train(atlas, neighbourhood=args.neighbourhood, label=args.label,
                       settings=settings, seed=args.seed, name=args.name, dims=args.dims,
                       pitch_axis=args.pitch_axis, resume=args.resume, replace=args.replace,
                       device=args.device,
                       progress=progress, stop_after=args.stop_after, init_from=args.init_from)
    out = {"name": result.name, "directory": str(result.directory), "iterations": result.iterations,
           "of": settings.iterations, "seconds": round(result.seconds, 1),
           "cpu_seconds": round(result.cpu_seconds, 1), "resumed_from": result.resumed_from,
           "resume_note": result.resume_note, "history": result.history,
           "neighbourhood": result.neighbourhood}
    if args.json:
        print_json(out)
    else:
        done = result.iterations >= settings.iterations
        state = "trained" if done else "paused (resume with --resume)"
        last_log = result.history[-1] if result.history else {}
        losses = (f"train loss {last_log['train_loss']:.4f}, validation loss "
                  + (f"{last_log['valid_loss']:.4f}" if last_log.get("valid_loss") is not None
                     else "not measured yet")
                  if "train_loss" in last_log else
                  f"no loss logged yet (every {settings.valid_every} iterations)")
        print(f"{state}: model {result.name}, {result.iterations}/{settings.iterations} "
              f"iterations in {result.seconds:.0f} s; {losses}")
        if result.resume_note:
            print(f"  {result.resume_note}")
        parts = result.neighbourhood.get("parts", [result.neighbourhood])
        for part in parts:
            excluded = part.get("n_excluded", 0)
            if excluded:
                reasons = part.get("excluded", {})
                whose = f" by {part['spec']}" if "spec" in part else ""
                print(f"  {excluded} training samples left out{whose}"
                      + (": " + ", ".join(f"{n} {why}" for why, n in reasons.items())
                         if reasons else ""))
        for skipped in result.neighbourhood.get("skipped", []):
            print(f"  neighbourhood {skipped['spec']} left out: {skipped['reason']}")
    warning = divergence([h.get("valid_loss") for h in result.history])
    if warning:
        print(f"soundatlas train: warning: {warning}", file=sys.stderr)
    return EXIT_OK


# -- embed, models, map --------------------------------------------------------------------------


def _embed(args, atlas):
    """Embed ``atlas``'s samples with ``args.model`` behind a progress bar; the summary."""
    from soundatlas.artifact import resolve_model, shipped_changed
    from soundatlas.embed import embed_atlas, ensure_registered

    artifact, registration = resolve_model(atlas, args.model)
    changed = shipped_changed(registration, artifact)
    executor = executor_for(args)  # a cluster that does not answer stops here, before any change
    if getattr(args, "again", False) and registration is not None:
        # registered anew in its own place: its embeddings and vectors go, the model stays
        atlas.register_model(registration.name, registration.dir, registration.config)
        artifact, registration = resolve_model(atlas, registration.name)
    model_id = ensure_registered(atlas, artifact, registration)
    if changed:
        print(f"the shipped model {artifact.name!r} is not the one this atlas was embedded with "
              "(an earlier soundatlas shipped another): every sample is embedded again",
              file=sys.stderr)
    with progress_bar(args, desc=f"embedding ({artifact.name})", unit="file") as progress:
        return embed_atlas(atlas, artifact, model_id, progress=progress,
                           precision=args.precision, device=args.device,
                           executor=executor)


def _add_embed(sub, parents) -> None:
    e = sub.add_parser("embed", parents=parents, help="embed the atlas's samples with a model",
                       description="Compute each sample's trajectory (one 3-D point per frame), "
                       "its point on the map and its similarity vector (what nearest sounds and "
                       "suggestions search); only samples without an embedding for the model "
                       "are computed, and the vectors of samples that have none or hold an "
                       "older similarity space's (`soundatlas models` says which).")
    add_options(e, ATLAS)
    e.add_argument("--model", "-m", metavar="NAME",
                   help="a model of the atlas, a shipped model or a model directory "
                   "(default: the shipped 'default')")
    add_options(e, EMBED_PRECISION, EMBED_DEVICE, SCHEDULER)
    e.add_argument("--again", action="store_true",
                   help="embed every sample again, dropping the model's points made before (in "
                   "another --precision, say); the model itself stays")
    e.set_defaults(func=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> int:
    """``soundatlas embed``: embed the samples that have no embedding for the model yet."""
    with open_atlas(args, write=True) as atlas:
        summary = _embed(args, atlas)
    if args.json:
        print_json(as_dict(summary))
    else:
        print(f"model {summary.model}: embedded {summary.n_embedded} samples "
              f"({summary.n_frames} frames, {summary.precision}) in {summary.seconds:.1f} s; "
              f"{summary.n_already} already had embeddings"
              + (f"; {summary.n_vectors} similarity vectors ({summary.similarity})"
                 if summary.n_vectors else ""))
        print_replaced(summary)
        if summary.earlier_precision:
            print(f"  the {summary.n_already} samples embedded before keep their "
                  f"{summary.earlier_precision} points: `soundatlas embed -m {summary.model} "
                  f"--precision {summary.precision} --again` makes every point again")
        print_skipped(summary)
    return EXIT_OK


def print_replaced(summary) -> None:
    """Say that an embed run replaced the similarity vectors of an older space, and how many."""
    if summary.replaced_space:
        print(f"  {counted(summary.n_replaced, 'similarity vector')} made again: those stored "
              f"were of an older space ({summary.replaced_space})")


def print_skipped(summary) -> None:
    """Print the samples an embed run left out (their features cannot be read) and the command
    that makes them whole, as ``index`` prints the files it could not decode."""
    if not summary.n_skipped:
        return
    print(f"  {summary.n_skipped} samples left out: their features cannot be read:")
    for path, why in summary.skipped[:50]:
        print(f"    {shown(path)}: {why}")
    if summary.n_skipped > 50:
        print(f"    ... and {summary.n_skipped - 50} more (--json lists all)")
    print(f"  to repair them: {summary.repair}")


def _model_row(name: str, where: str, config: dict, n_embedded: int | None) -> dict:
    from soundatlas.artifact import is_shipped

    metrics = config.get("metrics", {})
    # the figures are of the library they were measured on, not of this atlas: say which
    # (a shipped model's were measured on the demo library, its MADE_BY.md says how)
    measured_on = (metrics.get("protocol", {}).get("atlas")
                   or ("the demo library as `make demo` renders it (MADE_BY.md)"
                       if metrics and is_shipped(name) else None))
    return {"name": name, "where": where, "neighbourhood":
            config.get("neighbourhood", {}).get("name"), "preset": config.get("preset"),
            "iterations": config.get("training", {}).get("iterations"),
            "n_embedded": n_embedded, "metrics": metrics, "metrics_measured_on": measured_on,
            "pitch_axis": bool(config.get("architecture", {}).get("pitch_axis")),
            "lineage": _lineage(config)}


def _vectors_row(atlas, model) -> dict | None:
    """The space a model's similarity vectors are in: its description, whether it is the one
    ``embed`` computes now, and the command that replaces them where not; None without any."""
    from soundatlas import similarity

    space = atlas.similarity_space(model.id)
    if space is None:
        return None
    current = similarity.is_current(space, atlas.cqt_params)
    return {"space": similarity.describe(space), "version": space["spec"].get("version"),
            "current": current,
            "command": None if current else similarity.embed_command(atlas, model)}


def _lineage(config: dict) -> list[str]:
    """The models a fine-tuned model was trained from (``--init-from``, ``adapt``), the first
    phase first; empty for a model trained from scratch."""
    chain, base = [], config.get("init_from")
    while base:
        chain.append(base.get("name", "?"))
        base = (base.get("made_by") or {}).get("init_from")
    return chain[::-1]


def _add_models(sub, parents) -> None:
    m = sub.add_parser("models", parents=parents, help="list the atlas's and the shipped models, "
                       "or remove one from the atlas",
                       description="Models registered in the atlas and shipped with soundatlas; "
                       "`models --remove NAME` forgets an atlas model with its embeddings and "
                       "deletes its folder in the atlas (a shipped model's files stay in the "
                       "package).")
    add_options(m, ATLAS)
    m.add_argument("--remove", metavar="NAME", dest="name",
                   help="forget the atlas's model NAME with its embeddings and vectors, and "
                   "delete its folder in the atlas (its weights: a model trained here is gone)")
    m.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """``soundatlas models``: the atlas's models, then the shipped ones it does not have; or
    ``models --remove NAME``."""
    from soundatlas.artifact import CONFIG, SHIPPED_MODELS

    if args.name is not None:
        return _remove_model(args)
    rows = []
    named = args.atlas or os.environ.get("SOUNDATLAS_ATLAS")
    if named and not (atlas_dir(args) / "atlas.sqlite").is_file():  # a typo, not "no models"
        raise UsageError(f"no atlas at {atlas_dir(args)} (--atlas or $SOUNDATLAS_ATLAS)")
    if (atlas_dir(args) / "atlas.sqlite").is_file():
        with open_atlas(args) as atlas:
            rows = [dict(_model_row(m.name, "atlas", m.config, m.n_embedded),
                         similarity=_vectors_row(atlas, m)) for m in atlas.models()]
    for d in sorted(SHIPPED_MODELS.glob("*")):
        if (d / CONFIG).is_file() and not any(r["name"] == d.name for r in rows):
            rows.append(_model_row(d.name, "shipped", json.loads((d / CONFIG).read_text()), None))
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no models (train one with `soundatlas train`)")
    for r in rows:
        emb = "" if r["n_embedded"] is None else f", {r['n_embedded']} samples embedded"
        axis = ", height = measured pitch" if r["pitch_axis"] else ""
        print(f"{r['name']:32s} {r['where']:8s} {r['neighbourhood'] or '?':20s} "
              f"{r['preset'] or '?'} ({r['iterations']} it){axis}{emb}")
        vec = r.get("similarity")
        if vec and not vec["current"]:
            print(f"{'':32s} similarity vectors of an older space ({vec['space']}): "
                  f"`{vec['command']}` brings them up to date")
        if r["lineage"]:  # what the line above describes is the last phase only
            print(f"{'':32s} {len(r['lineage']) + 1} phases: {' -> '.join(r['lineage'])} -> "
                  "this (the line above: the last phase)")
    return EXIT_OK


def _remove_model(args: argparse.Namespace) -> int:
    """``models --remove NAME``: the registration, its embeddings and vectors, and its folder in
    the atlas, once no run is training it."""
    import shutil

    from soundatlas.errors import AtlasError
    from soundatlas.train import model_lock

    with open_atlas(args, write=True) as atlas:
        try:
            record = atlas.model(args.name)
        except AtlasError as exc:
            raise UsageError(str(exc)) from None
        folder = atlas.path / record.dir
        own = (not record.dir.startswith("shipped:") and not os.path.isabs(record.dir)
               and folder.resolve().parent == (atlas.path / "models").resolve())
        run_dir = folder if own else atlas.path / "models" / args.name
        made = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)  # the lock's place, if it had none
        with model_lock(run_dir, f"the model {args.name!r} of the atlas at {atlas.path}"):
            atlas.remove_model(args.name)
        if own or made:
            shutil.rmtree(run_dir, ignore_errors=True)
    payload = {"removed": args.name, "n_embedded": record.n_embedded,
               "folder": str(run_dir) if own else None}
    if args.json:
        print_json(payload)
    else:
        where = f" and its folder {run_dir}" if own else ""
        print(f"removed model {args.name} from the atlas: its {record.n_embedded} samples' "
              f"embeddings{where}")
    return EXIT_OK


def _add_map(sub, parents) -> None:
    mp = sub.add_parser("map", parents=parents, help="index a library and embed it (one step)",
                        description="`soundatlas index LIBRARY` followed by `soundatlas embed` "
                        "with the shipped default model (or --model).")
    add_options(mp, *INDEX_OPTIONS)
    mp.add_argument("--model", "-m", metavar="NAME",
                    help="model to embed with (default: the shipped 'default')")
    add_options(mp, EMBED_PRECISION, EMBED_DEVICE)
    mp.add_argument("--adapt", action="store_true",
                    help="then fine-tune the model to this library without labels and embed "
                    "with it too (`soundatlas adapt` with its defaults): the page offers both "
                    "maps")
    mp.add_argument("--minutes", type=positive_float, metavar="M",
                    help="with --adapt: train for at most M minutes (as adapt --minutes)")
    mp.set_defaults(func=cmd_map)


def cmd_map(args: argparse.Namespace) -> int:
    """``soundatlas map``: ``index`` then ``embed``, in one step."""
    from soundatlas.atlas import Atlas, default_atlas_dir

    if args.minutes is not None and not args.adapt:
        raise UsageError("--minutes limits the adaptation: give --adapt with it")
    path = Path(args.atlas) if args.atlas else default_atlas_dir(args.library)
    if args.model:  # a model that is not there, named before the whole library is indexed
        from soundatlas.artifact import resolve_model

        try:
            atlas = Atlas.open(path) if Atlas.exists(path) else None
        except AtlasError:  # one that only the index step can read (an old schema): later
            pass
        else:
            try:
                resolve_model(atlas, args.model)
            finally:
                if atlas is not None:
                    atlas.close()
    index_summary = run_index(args)
    if not args.json:
        print_index_summary(index_summary)
    failed = nothing_indexed(index_summary)
    if failed and not index_summary.n_samples:  # nothing to embed
        if args.json:
            print_json({"index": index_summary.to_dict()})
        raise SoundAtlasError(failed)
    with Atlas.open(path, write=True) as atlas:
        summary = _embed(args, atlas)
        if not args.json:
            print(f"mapped with model {summary.model}: {summary.n_embedded} new, "
                  f"{summary.n_already} already embedded ({summary.seconds:.1f} s)")
            print_replaced(summary)
            print_skipped(summary)
        adapted = None
        if args.adapt:  # run again, map keeps a finished adaptation, and goes on from an
            # interrupted one's checkpoint
            base = args.model or "default"
            adapted = _kept_adaptation(args, atlas, base) or _adapt_going_on(args, atlas, base)
    if args.json:
        print_json({"index": index_summary.to_dict(), "embed": as_dict(summary),
                    **({"adapt": adapted} if adapted else {})})
    elif adapted:
        print(_adapted_line(adapted, args.minutes))
    if failed:  # the samples the atlas held are mapped; the run's new files are not
        raise SoundAtlasError(failed)
    return EXIT_OK


# -- adapt ---------------------------------------------------------------------------------------


def _add_adapt(sub, parents) -> None:
    ad = sub.add_parser("adapt", parents=parents,
                        help="fine-tune a model to this library without labels, and embed",
                        description="Label-free adaptation: fine-tune a model (default: the "
                        "shipped 'default') on the atlas's own sounds with neighbourhoods that "
                        "need no labels (by default the base model's own map neighbours and the "
                        "same sound under two augmentations), register it beside its base as "
                        "BASE-adapted "
                        "and embed every sample with it. Resumable (--resume).")
    add_options(ad, ATLAS)
    ad.add_argument("--model", "-m", default="default", metavar="NAME",
                    help="the model to start from (default: the shipped 'default')")
    ad.add_argument("--name", metavar="NAME", type=_model_name,
                    help="the adapted model's name (default: "
                    "MODEL-adapted)")
    ad.add_argument("--iterations", type=positive_int, default=_ADAPT_DEFAULTS.iterations,
                    metavar="N", help="training steps of 32 triples (default: "
                    f"{_ADAPT_DEFAULTS.iterations})")
    ad.add_argument("--minutes", type=positive_float, metavar="M",
                    help="train for at most M minutes (at most --iterations steps), then finish "
                    "the model at the step reached and embed; --iterations set to the steps "
                    "taken makes the same model")
    ad.add_argument("--lr", type=positive_float, default=_ADAPT_DEFAULTS.lr, metavar="LR",
                    help=f"learning rate of the fine-tuning (default: {_ADAPT_DEFAULTS.lr:g})")
    ad.add_argument("--neighbourhood", "-n", default=_ADAPT_DEFAULTS.neighbourhood, metavar="SPEC",
                    help="label-free neighbourhoods with weights: input-knn (input-space "
                    "neighbours), teacher-knn (neighbours in the base model's hidden layer), "
                    "teacher-map (neighbours on the base model's map), augment-pair "
                    f"(default: {_ADAPT_DEFAULTS.neighbourhood})")
    ad.add_argument("--augment", default=_ADAPT_DEFAULTS.augment, metavar="SPEC",
                    help="augmentation of every training window, as train --augment reads it "
                    f"('none': off; default: {_ADAPT_DEFAULTS.augment}); augment-pair's own "
                    "pairs are augmented either way")
    ad.add_argument("--anchor", type=nonnegative_float, default=_ADAPT_DEFAULTS.anchor,
                    metavar="W", help="weight of a pull towards the points the base model gives "
                    "each window, beside the neighbourhoods: more keeps more of the base's map "
                    f"(default: {_ADAPT_DEFAULTS.anchor:g}; 0: none)")
    add_options(ad, SEED, THREADS)
    ad.add_argument("--precision", choices=EMBED_PRECISION.kwargs["choices"], default="auto",
                    help="the arithmetic of the embedding that follows the training, as embed's "
                    "--precision (default: auto)")
    ad.add_argument("--resume", action="store_true",
                    help="continue an interrupted adaptation from its checkpoint")
    ad.add_argument("--replace", action="store_true",
                    help="adapt again under the name of a model the atlas holds, in its place "
                    "(its embeddings are dropped); without it such a name is refused")
    ad.add_argument("--stop-after", type=positive_int, metavar="N",
                    help="pause after N iterations of this call (resumable)")
    ad.set_defaults(func=cmd_adapt)


def _adapt_resume_command(args: argparse.Namespace) -> str:
    """The command that continues this adaptation: the same run, so the same settings.

    Every training setting is written out, defaults included, so that the command still names
    this run after a version whose defaults differ.
    """
    words = ["soundatlas", "adapt", "--atlas", str(atlas_dir(args)), "--model", args.model]
    if args.name is not None:
        words += ["--name", args.name]
    # repr: the shortest text that reads back as the same float (":g" kept six digits, and a
    # rounded rate or anchor is another run, which --resume refuses)
    words += ["--iterations", str(args.iterations), "--lr", repr(args.lr),
              "-n", args.neighbourhood, "--augment", args.augment,
              "--anchor", repr(args.anchor), "--seed", str(args.seed)]
    if args.minutes is not None:
        words += ["--minutes", repr(args.minutes)]
    return shlex.join(words + ["--resume"])


def _adapt_with_progress(args: argparse.Namespace, atlas, *, base: str, settings, minutes,
                         **kw) -> dict:
    """``adapt.adapt`` with a progress bar for its training and one for its embedding."""
    from soundatlas.adapt import adapt

    with progress_bar(args, desc="adapting", unit="it") as train_bar, \
            progress_bar(args, desc="embedding", unit="file") as embed_bar:

        def train_progress(done, total, stats):
            train_bar(done, total, loss=f"{stats['loss']:.4f}",
                      **{"triples/s": f"{stats['triples_per_s']:.0f}"})

        return adapt(atlas, base=base, settings=settings, minutes=minutes,
                     train_progress=train_progress, embed_progress=embed_bar, **kw)


def _adapt_going_on(args: argparse.Namespace, atlas, base: str) -> dict:
    """``map --adapt``'s adaptation: from its checkpoint where an interrupted one left it, and
    afresh, saying so, where that checkpoint belongs to another run (``map`` has just indexed
    new files, or ``adapt`` paused it with other settings)."""
    from soundatlas.train import CheckpointMismatch

    kw = dict(base=base, settings=AdaptSettings(), minutes=args.minutes,
              precision=args.precision, device=args.device)  # map's embedding options
    try:
        return _adapt_with_progress(args, atlas, resume=True, **kw)
    except CheckpointMismatch as exc:
        print(f"soundatlas map: the adaptation starts again: {exc}", file=sys.stderr)
        return _adapt_with_progress(args, atlas, resume=False, **kw)


def _kept_adaptation(args: argparse.Namespace, atlas, base: str) -> dict | None:
    """Where ``map --adapt`` finds the adapted model made before (``BASE-adapted``): embed the
    samples it has not seen with it, and say so (None when there is none)."""
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas

    name = f"{resolve_model(atlas, base)[0].name}-adapted"
    if atlas.find_model(name) is None:
        return None
    artifact, registration = resolve_model(atlas, name)
    with progress_bar(args, desc="embedding", unit="file") as bar:
        embedded = embed_atlas(atlas, artifact, registration.id, progress=bar,
                               precision=args.precision, device=args.device)
    return {"name": name, "base": base, "kept": True, "done": True,
            "iterations": artifact.config.get("training", {}).get("iterations"),
            "n_embedded": embedded.n_embedded, "n_already": embedded.n_already,
            "embed_seconds": round(embedded.seconds, 1)}


def _valid_losses(losses: dict | None) -> str:
    """`` (validation loss A -> B)`` of an adaptation's summary, or nothing where unmeasured."""
    if not losses or losses.get("first") is None or losses.get("last") is None:
        return ""
    if losses.get("n_measured") == 1:  # a short run: "A -> A" would read as nothing learnt
        return f" (validation loss {losses['last']:.4f}, measured once, at the end)"
    return f" (validation loss {losses['first']:.4f} -> {losses['last']:.4f})"


def _adapted_line(summary: dict, minutes: float | None) -> str:
    """The sentence that reports a finished adaptation."""
    if summary.get("kept"):
        return (f"kept the adapted model {summary['name']} made before (`soundatlas adapt "
                f"--replace` adapts again): embedded {summary['n_embedded']} new samples with "
                f"it, {summary['n_already']} already")
    return (f"adapted {summary['base']} to this library without labels "
            f"({summary['neighbourhood']}, augment {summary['augment']}): model "
            f"{summary['name']}, {summary['iterations']} iterations in "
            f"{summary['train_seconds']:.0f} s"
            + (f" (the {minutes:g} minutes' limit)" if summary["time_limited"] else "")
            + _valid_losses(summary.get("valid_loss"))
            + f"; embedded {summary['n_embedded']} samples in "
            f"{summary['embed_seconds']:.0f} s. "
            + (f"The page's model switcher offers {summary['base']} and {summary['name']}."
               if summary.get("base_embedded") else
               f"The page shows {summary['name']}; `soundatlas embed -m {summary['base']}` "
               "puts the base's map beside it."))


def cmd_adapt(args: argparse.Namespace) -> int:
    """``soundatlas adapt``: fine-tune a model to the atlas without labels, and embed."""
    from soundatlas.adapt import adapt_settings
    from soundatlas.errors import ParameterError

    _resume_or_replace(args)
    try:  # -n, --augment, --lr, --minutes that cannot work: misuse, as for train
        settings = AdaptSettings(iterations=args.iterations, lr=args.lr,
                                 neighbourhood=args.neighbourhood, augment=args.augment,
                                 anchor=args.anchor)
        adapt_settings(settings)
        if args.minutes is not None and not math.isfinite(args.minutes):
            raise ParameterError(f"--minutes {args.minutes} must be a finite number")
    except ParameterError as exc:
        raise UsageError(str(exc)) from None
    with open_atlas(args, write=True) as atlas:
        summary = _adapt_with_progress(args, atlas, base=args.model, settings=settings,
                                       minutes=args.minutes, name=args.name, seed=args.seed,
                                       resume=args.resume, stop_after=args.stop_after,
                                       threads=args.threads, replace=args.replace,
                                       precision=args.precision)
    if args.json:
        print_json(summary)
    elif not summary["done"]:
        print(f"adaptation {summary['name']} paused at iteration {summary['iterations']} of "
              f"{summary['of']}; continue with `{_adapt_resume_command(args)}`")
    else:
        print(_adapted_line(summary, args.minutes))
    from soundatlas.train import divergence

    losses = summary.get("valid_loss") or {}
    warning = divergence([losses.get("first"), losses.get("last")])
    if warning:
        print(f"soundatlas adapt: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``train``, ``embed``, ``models``, ``map``, ``adapt`` (see :mod:`soundatlas.cli`)."""
    for add in (_add_train, _add_embed, _add_models, _add_map, _add_adapt):
        add(sub, parents)
