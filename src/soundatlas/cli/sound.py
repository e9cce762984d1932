"""Commands that make sound and figures from a map: ``synth`` (a path through the map),
``mosaic`` (a sound rebuilt from the library's grains) and ``trajectory`` (one sample's path,
drawn); and ``similar`` (the nearest sounds, as the page finds them).

``synth`` and ``mosaic`` render the same way, so they share the rendering options declared
here once (:data:`GRAIN`, :data:`OVERLAP`, :data:`EXCLUDE`, :data:`SAMPLE_RATE`,
:data:`WAV_FORMAT`, :data:`WAV_OUTPUT`); ``--sample-rate`` is also accepted as ``--sr``.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from soundatlas.cli.common import (
    ATLAS,
    EXIT_OK,
    UsageError,
    add_options,
    check_output,
    float_range,
    int_range,
    nonnegative_int,
    number,
    open_atlas,
    option,
    positive_int,
    print_json,
    progress_bar,
    shown,
)

__all__ = ["register", "MAP_MODEL", "GRAIN", "OVERLAP", "HOLD", "EXCLUDE", "SAMPLE_RATE",
           "WAV_FORMAT", "WAV_OUTPUT", "cmd_synth", "cmd_mosaic", "cmd_trajectory",
           "cmd_similar"]


def _overlap(text: str) -> float:
    """``--overlap``: a fraction from 0 to 0.95."""
    value = number(text)
    if not 0 <= value <= 0.95:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 0.95")
    return value


#: ``--model`` of the commands that use one embedded map.
MAP_MODEL = option("--model", "-m", metavar="NAME",
                   help="model whose map to use (default: 'default' when embedded, else the "
                   "first embedded model)")
#: Rendering options of ``synth`` and ``mosaic``.
#: what the renderer accepts (``synth.render.check_grain``, ``synth.paths.MIN_DURATION`` and
#: ``MAX_DURATION``, ``synth.render``'s rates): out of range is misuse, named by its option
GRAIN_SECONDS, WALK_SECONDS, RATES = (0.01, 10.0), (0.01, 600.0), (1000, 384000)
GRAIN = option("--grain", type=float_range(*GRAIN_SECONDS), default=0.5, metavar="SECONDS",
               help="grain length, 0.01 to 10 (default: 0.5, the reference)")
OVERLAP = option("--overlap", type=_overlap, default=0.5, metavar="FRACTION",
                 help="fraction of a grain shared with the next, 0 to 0.95 (default: 0.5, the "
                 "reference; 0.9 puts a grain on every frame)")
HOLD = option("--hold", choices=["advance", "repeat"], default="advance",
              help="where the path stays on one frame: advance (default) plays on through that "
              "sound, each grain reading on from the last; repeat re-reads the frame's grain "
              "(the reference: a tone comb-filters)")
EXCLUDE = option("--exclude", nargs="+", action="extend", metavar="ITEM",
                 help="never use these samples: sample ids or folders/files relative to the "
                 "library (repeatable)")
SAMPLE_RATE = option("--sample-rate", aliases=("--sr",), type=int_range(*RATES), metavar="HZ",
                     help="output sample rate, 1000 to 384000 (default: the library's most "
                     "common original rate)")
WAV_FORMAT = option("--format", choices=["pcm16", "float"], default="pcm16",
                    help="WAV sample format: pcm16 (16-bit PCM, default) or float (32-bit float)")
WAV_OUTPUT = option("--output", "-o", required=True, metavar="OUT.wav", help="WAV file to write")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@contextmanager
def _map_frames(args):
    """The atlas, ``--model``'s registration and the frame index of its map (a k-d tree of its
    sounding frames, loaded or built behind a progress bar), for rendering."""
    from soundatlas.synth import FrameIndex, embedded_model

    with open_atlas(args) as atlas:
        registration = embedded_model(atlas, args.model)
        with progress_bar(args, desc="frame index", unit="sample") as progress:
            index = FrameIndex.load(atlas, registration, progress=progress)
            index.tree  # noqa: B018 - build the k-d tree here, so the render time is the render's
        yield atlas, registration, index


def _print_rendering(result, out: Path, fmt: str, index, extra: str = "") -> None:
    from soundatlas.synth import WAV_SUBTYPES

    s = result.summary()
    print(f"wrote {out}: {s['duration']:.2f} s at {s['sr']} Hz, {WAV_SUBTYPES[fmt][1]}{extra}")
    print(f"  {s['n_grains']} grains of {result.grain:g} s (overlap {result.overlap:g}) from "
          f"{s['n_samples_used']} samples, model {result.model}; mean snap distance "
          f"{s['mean_snap_distance']:.3f}")
    source = "from its cache" if index.from_cache else "built and cached"
    print(f"  rendered in {s['seconds']:.2f} s ({s['realtime_factor']:g}x real time); frame index "
          f"of {len(index)} sounding frames {source}")
    if s["limiter_db"] > 0:
        print(f"  limiter: up to {s['limiter_db']:.1f} dB of gain reduction (never clips)")
    if s["n_excluded"]:
        print(f"  {_plural(s['n_excluded'], 'sample')} excluded")
    if result.failures:
        print(f"  {len(result.failures)} files could not be read now and were left out:")
        for path, reason in result.failures[:20]:
            print(f"    {shown(path)}: {shown(reason)}")


def _check_synth_args(args) -> None:
    if (args.path is None) == (args.walk is None):
        raise UsageError("give a path file (--path PATH.json) or a generated walk "
                         "(--walk random|knn), one of them")
    if args.path is not None and args.duration is not None:
        raise UsageError("--duration is for --walk; a path file's durations set its length")
    if args.path is not None and args.seed is not None:
        raise UsageError("--seed is for --walk; a path file is rendered as it is")
    if args.walk is not None and args.glide:
        raise UsageError("--glide is for --path (a random walk glides, a knn walk holds frames)")


def _add_synth(sub, parents) -> None:
    sy = sub.add_parser("synth", parents=parents, help="render a path through the map as audio",
                        description="Concatenative synthesis: each point of a path (a JSON file or "
                        "a generated walk) snaps to the nearest sounding frame of the whole "
                        "library, and grains of the original files around those frames are "
                        "overlap-added with a Hann window, loudness-matched and limited. Writes "
                        "a WAV file.")
    add_options(sy, ATLAS, MAP_MODEL)
    sy.add_argument("--path", metavar="PATH.json",
                    help='a path file: {"points": [[x, y, z], ...], "durations": [seconds, ...]} '
                    '(or one "duration" for every point; "glide": true to move between points)')
    sy.add_argument("--walk", choices=["random", "knn"],
                    help="generate the path instead: random (a smoothed random walk in the map's "
                    "bounding box) or knn (hops between neighbouring frames of other samples)")
    sy.add_argument("--duration", type=float_range(*WALK_SECONDS), metavar="SECONDS",
                    help="length of a --walk, 0.01 to 600 (default: 30)")
    sy.add_argument("--seed", type=nonnegative_int, metavar="N",
                    help="seed of a --walk (default: 0)")
    sy.add_argument("--k", type=positive_int, default=8, metavar="K",
                    help="neighbouring samples a knn walk chooses among (default: 8)")
    sy.add_argument("--glide", action="store_true",
                    help="move in straight lines between a path file's points instead of holding "
                    "each for its duration")
    add_options(sy, GRAIN, OVERLAP, HOLD, EXCLUDE, SAMPLE_RATE, WAV_FORMAT, WAV_OUTPUT)
    sy.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    """``soundatlas synth``: render a path file or a generated walk through the map as a WAV."""
    import dataclasses

    from soundatlas import synth

    out = check_output(args.output, ".wav")
    _check_synth_args(args)
    path = synth.read_path(args.path) if args.path else None  # a bad file fails before the atlas
    if path is not None and args.glide:
        path = dataclasses.replace(path, glide=True)
    seed = 0 if args.seed is None else args.seed
    with _map_frames(args) as (atlas, registration, index):
        excluded = synth.resolve_exclusions(atlas, args.exclude or ())
        if path is None:
            duration = 30.0 if args.duration is None else args.duration
            on = index.without(excluded)
            if args.walk == "random":
                path = synth.random_walk(on, duration=duration, seed=seed)
            else:
                path = synth.knn_walk(on, duration=duration, seed=seed, k=args.k,
                                      step=args.grain * (1 - args.overlap))
        result = synth.render(atlas, registration, path, sr=args.sample_rate, grain=args.grain,
                              overlap=args.overlap, hold=args.hold, exclude=excluded,
                              index=index)
    synth.write_wav(out, result.y, result.sr, fmt=args.format)
    if args.json:
        print_json({"output": str(out), "format": synth.WAV_SUBTYPES[args.format][1],
                    "path": args.path, "walk": args.walk, "seed": seed if args.walk else None,
                    "n_points": len(path.points), "index_from_cache": index.from_cache,
                    "n_index_frames": len(index), **result.summary()})
    else:
        what = f"path {args.path}" if args.path else f"{args.walk} walk, seed {seed}"
        _print_rendering(result, out, args.format, index, f" ({what})")
    return EXIT_OK


def _add_mosaic(sub, parents) -> None:
    mo = sub.add_parser("mosaic", parents=parents,
                        help="rebuild a sound from the library's grains",
                        description="Embed TARGET with the model exactly as a query by example "
                        "does, follow its trajectory with grains of the library's sounds (the "
                        "nearest sounding frame at each grain), each scaled to the target's own "
                        "loudness at that time. Writes a WAV file.")
    mo.add_argument("target", metavar="TARGET", help="audio file to rebuild")
    add_options(mo, ATLAS, MAP_MODEL)
    mo.add_argument("--exclude-self", action="store_true",
                    help="never use the target itself: samples with its content (hash) or at "
                    "its path in the library")
    add_options(mo, EXCLUDE, GRAIN, OVERLAP, HOLD, SAMPLE_RATE, WAV_FORMAT, WAV_OUTPUT)
    mo.set_defaults(func=cmd_mosaic)


def cmd_mosaic(args: argparse.Namespace) -> int:
    """``soundatlas mosaic``: rebuild a target sound from the library's grains as a WAV."""
    from soundatlas import synth
    from soundatlas.audio import open_sound

    out = check_output(args.output, ".wav")
    open_sound(args.target).close()  # a target that is not audio fails before the frame index
    with _map_frames(args) as (atlas, registration, index):
        result, target = synth.mosaic(atlas, registration.name, args.target,
                                      exclude_self=args.exclude_self, exclude=args.exclude or (),
                                      sr=args.sample_rate, grain=args.grain, overlap=args.overlap,
                                      hold=args.hold, index=index)
    synth.write_wav(out, result.y, result.sr, fmt=args.format)
    if args.json:
        target = {k: v for k, v in target.items() if k != "excluded_ids"}
        print_json({"output": str(out), "format": synth.WAV_SUBTYPES[args.format][1],
                    "target": target, "exclude_self": args.exclude_self,
                    "index_from_cache": index.from_cache, **result.summary()})
    else:
        cut = " (its first part: --max-duration of the index)" if target["truncated"] else ""
        _print_rendering(result, out, args.format, index,
                         f" (a mosaic of {args.target}{cut})")
        if args.exclude_self:
            print(f"  --exclude-self: {_plural(target['n_self_excluded'], 'sample')} with the "
                  "target's content or path left out")
    return EXIT_OK


def _add_trajectory(sub, parents) -> None:
    tj = sub.add_parser("trajectory", parents=parents, help="draw one sample's trajectory",
                        description="Draw SAMPLE's trajectory (one point per frame) in 3-D over "
                        "the faint map: its sounding part (the first to the last frame at least "
                        "5 % as loud as the loudest) with start, median frame and end marked, "
                        "the near-silence around it dotted; beside it, its coordinates and "
                        "loudness over time. Writes a PNG.")
    tj.add_argument("sample", metavar="SAMPLE",
                    help="a sample id or a path relative to the library")
    add_options(tj, ATLAS, MAP_MODEL)
    tj.add_argument("--output", "-o", required=True, metavar="FIG.png", help="PNG file to write")
    tj.set_defaults(func=cmd_trajectory)


def cmd_trajectory(args: argparse.Namespace) -> int:
    """``soundatlas trajectory``: draw one sample's trajectory under a model as a PNG."""
    from soundatlas import synth

    out = check_output(args.output, ".png")
    with open_atlas(args) as atlas:
        registration = synth.embedded_model(atlas, args.model)
        rec = synth.find_sample(atlas, args.sample)
        out, span = synth.plot_trajectory(atlas, registration, rec, out)
    result = {"output": str(out), "sample": rec.id, "path": rec.path,
              "model": registration.name, "n_frames": rec.n_frames,
              "duration": rec.duration, "sounding": list(span)}
    if args.json:
        print_json(result)
    else:
        print(f"wrote {out}: trajectory of {shown(rec.path)} (sample {rec.id}, {rec.n_frames} "
              f"frames, {rec.duration:.2f} s; sounding frames {span[0]}-{span[1]} drawn) under model "
              f"{registration.name}")
    return EXIT_OK


def _add_similar(sub, parents) -> None:
    from soundatlas.web.deps import MAX_K

    si = sub.add_parser(
        "similar", parents=parents, help="the samples nearest a sample or an audio file",
        description="The K samples nearest SOUND, as the page's nearest sounds find them: a "
        "sample of the atlas, or an audio file from anywhere, analysed and embedded as indexing "
        "does (query by example; it is not added to the atlas). The code that answers the "
        "page's API answers here (GET /api/models/NAME/neighbours/ID, POST "
        "/api/models/NAME/query), a file read where it lies: --json prints its answer.")
    si.add_argument("sound", metavar="SOUND",
                    help="a sample id, a path of a sample (relative to the library, absolute, "
                    "or from the working folder), or an audio file that is no sample of the "
                    "atlas")
    add_options(si, ATLAS, MAP_MODEL)
    si.add_argument("-k", type=positive_int, default=10, metavar="N",
                    help=f"how many (default: 10; at most {MAX_K})")
    si.add_argument("--space", choices=("similarity", "timbre", "map"),
                    help="where to search: similarity (sound and pitch, the default where the "
                    "model has similarity vectors), timbre (the same instrument at any pitch) "
                    "or map (the 3-D points)")
    si.add_argument("--exact", action="store_true",
                    help="search every similarity vector where a large atlas is searched "
                    "approximately by default")
    si.set_defaults(func=cmd_similar)


def cmd_similar(args: argparse.Namespace) -> int:
    """``soundatlas similar``: the nearest samples of a sample or an outside file, answered by
    the functions that answer the page's API (no HTTP: a file is read where it lies)."""
    from fastapi import HTTPException

    from soundatlas import synth
    from soundatlas.cli.common import atlas_dir
    from soundatlas.cli.curate import resolve_items
    from soundatlas.errors import SoundAtlasError
    from soundatlas.web.app import create_app
    from soundatlas.web.deps import MAX_K
    from soundatlas.web.routers.models import _neighbours, _query

    if args.k > MAX_K:
        raise UsageError(f"-k {args.k} must be at most {MAX_K}")
    if args.sound.strip() in ("", "-"):
        raise UsageError("SOUND is one sample or one audio file (- reads no list here)")
    upload = Path(args.sound)
    with open_atlas(args) as atlas:
        model = synth.embedded_model(atlas, args.model).name
        library = atlas.library.resolve()
        rec = None
        # a file here that is not in the library is an outside file, whatever the library
        # holds under the same relative path; else the item as the curation commands read it
        if not (upload.is_file() and not upload.resolve().is_relative_to(library)):
            try:
                ids = resolve_items(atlas, [args.sound])
            except UsageError as exc:
                if not str(exc).startswith("no samples at"):
                    raise  # an id that is a folder too, say
                ids = []
            if len(ids) > 1 or (ids and _is_folder(args.sound, library)):
                raise UsageError(f"{args.sound} is a folder ({len(ids)} samples): give one "
                                 "sample or an audio file")
            rec = atlas.samples(ids)[0] if ids else None
    if rec is None and not upload.is_file():
        raise UsageError(f"{args.sound} names no sample of the atlas (a sample id, or a path "
                         "relative to the library) and no audio file")
    web = create_app(atlas_dir(args), model=model, read_only=True).state.web
    try:
        if rec is not None:
            answer = _neighbours(web, model, rec.id, args.k, args.space, args.exact, build=True)
        else:
            answer = _query(web, upload, upload.name, model, args.k, args.space, args.exact)
    except HTTPException as exc:
        detail = exc.detail.get("error", exc.detail) if isinstance(exc.detail, dict) \
            else exc.detail
        raise SoundAtlasError(f"{args.sound}: {detail}") from None
    if rec is None:
        answer["file"] = args.sound  # as given
    if args.json:
        print_json(answer)
        return EXIT_OK
    what = rec.path if rec is not None else f"{args.sound} (a file outside the atlas)"
    print(f"nearest {len(answer['neighbours'])} to {shown(what)}, model {model}, "
          f"{answer['space']} space{'' if answer.get('exact', True) else ' (approximate)'}:")
    for rank, n in enumerate(answer["neighbours"], 1):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(n["labels"].items())
                           if k not in ("folder", "starred"))
        print(f"{rank:4d}  {n['distance']:8.4f}  {n['id']:>7}  {shown(n['path'])}"
              + (f"  ({labels})" if labels else "")
              + ("  [the same file]" if n.get("copy") else ""))
    if answer.get("note"):
        print(f"note: {answer['note']}")
    return EXIT_OK


def _is_folder(item: str, library: Path) -> bool:
    """Whether ``item`` names a folder (of the library, or from the working folder)."""
    return (library / item).is_dir() or Path(item).is_dir()


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``synth``, ``mosaic``, ``trajectory`` and ``similar`` (see
    :mod:`soundatlas.cli`)."""
    for add in (_add_synth, _add_mosaic, _add_trajectory, _add_similar):
        add(sub, parents)
