"""The command line: parses, orchestrates the stages, prints. Exit 0 ok, 1 failure, 2 misuse."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from soundatlas import __version__
from soundatlas.adapt import ADAPT_NEIGHBOURHOOD
from soundatlas.errors import ParameterError, SoundAtlasError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(SoundAtlasError):
    """The command line itself is wrong (exit status 2)."""


# -- helpers -------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def _duration_or_none(text: str) -> float | None:
    if text.lower() in {"none", "0", "inf", "all"}:
        return None
    return _positive_float(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


@contextmanager
def _progress_bar(args, *, desc: str, unit: str):
    """A tqdm bar (on stderr, hidden when not a terminal or with --quiet) as a callback."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit=unit, disable=True if args.quiet else None,
               dynamic_ncols=True, smoothing=0.1)

    def update(n_done: int, n_total: int, **postfix) -> None:
        if bar.total != n_total:
            bar.total = n_total
            bar.refresh()
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        bar.update(n_done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _atlas_dir(args) -> Path:
    if args.atlas:
        return Path(args.atlas)
    return Path(os.environ.get("SOUNDATLAS_ATLAS", "")) if os.environ.get("SOUNDATLAS_ATLAS") else (
        Path.cwd() / ".soundatlas"
    )


# -- commands --------------------------------------------------------------------------------------


def cmd_demo_library(args) -> int:
    from soundatlas import demo

    with _progress_bar(args, desc="rendering", unit="note") as progress:
        summary = demo.render_library(
            args.out,
            sound_set=args.set,
            soundfont=args.soundfont,
            classes=args.classes,
            velocities=tuple(args.velocities),
            pitch_step=args.pitch_step,
            kits=args.kits,
            drum_keys=args.drum_keys,
            synth_count=args.count,
            synth_seed=args.seed,
            audio_format=args.format,
            sample_rate=args.sample_rate,
            n_jobs=args.jobs,
            progress=progress,
        )
    if args.json:
        _print_json(_as_dict(summary))
        return EXIT_OK
    out = summary.out
    print(f"rendered {summary.n_files_written} notes ({_human_bytes(summary.n_bytes)}) into {out} "
          f"in {summary.seconds:.1f} s ({out}/metadata.csv)")
    if len(summary.parts) > 1 or any(part.folder for part in summary.parts):
        for part in summary.parts:
            print(f"  {part.folder or '.'}: {part.n_files_written} of {part.n_notes} notes "
                  f"({_human_bytes(part.n_bytes)})")
    for message in summary.messages:
        print(f"  {message}")
    silent = summary.silent
    lines = summary.silent_lines()
    for k, line in enumerate(lines):
        where = f" (listed in {out}/silent.csv and by --verbose)" if k == len(lines) - 1 else ""
        print(f"  {line}{where}")
    if args.verbose:
        for skipped in silent:
            print(f"    {skipped.note.path}")
    other = [s for s in summary.skipped if not s.silent]
    if other:
        print(f"  {len(other)} notes not written:")
    for skipped in other if args.verbose else other[:20]:
        print(f"    {skipped.note.path}: {skipped.reason}")
    if summary.clipped:
        print(f"  {len(summary.clipped)} notes clipped at full scale (peak {summary.peak:.2f}), "
              f"e.g. {summary.clipped[0].path}")
    return EXIT_OK


def cmd_index(args) -> int:
    summary = _index(args)
    if args.json:
        _print_json(summary.to_dict())
    else:
        _print_index_summary(summary)
    return EXIT_OK


def _index(args):
    """Run `index` with the options `index` and `map` share, behind a progress bar."""
    from dataclasses import replace

    from soundatlas.cqt import PAPER_CQT
    from soundatlas.indexing import cqt_for_model, index_library

    # a new atlas gets the CQT its model needs (map: --model; index: the shipped default)
    params = cqt_for_model(args.library, args.atlas, getattr(args, "model", None))
    if args.cqt_kernel:
        params = replace(params or PAPER_CQT, kernel=args.cqt_kernel)
    with _progress_bar(args, desc="indexing", unit="file") as progress:
        return index_library(
            args.library, atlas_dir=args.atlas, label_sources=_label_sources(args),
            params=params, refresh_features=args.refresh_features,
            max_duration=args.max_duration, n_jobs=args.jobs, batch_size=args.batch_size,
            executor=_executor(args), progress=progress,
        )


def _label_sources(args):
    from soundatlas.labels import LabelSources

    if args.labels or args.name_pattern or args.no_folder_labels:
        return LabelSources(manifest=args.labels, folder=not args.no_folder_labels,
                            name_pattern=args.name_pattern)
    return None


def _executor(args):
    if not getattr(args, "scheduler", None):
        return None
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask distributed: pip install 'distributed'") from None
    return Client(args.scheduler).get_executor()


def _print_index_summary(s) -> None:
    rate = (s.n_indexed / s.seconds) if s.seconds > 0 else 0.0
    print(f"atlas {s.atlas}: {s.n_samples} samples, {s.n_frames} frames")
    print(f"  indexed {s.n_indexed} · unchanged {s.n_unchanged} · moved {s.n_moved} · "
          f"removed {s.n_removed} · failed {s.n_failed}   ({s.seconds:.1f} s, {rate:.0f} files/s)")
    if s.n_truncated:
        print(f"  {s.n_truncated} long files: only the first {s.max_duration:g} s analysed "
              f"(--max-duration), e.g. {s.truncated[0]}")
    if s.label_counts:
        print("  labels: " + ", ".join(f"{k} ({n})" for k, n in sorted(s.label_counts.items())))
    for problem in s.label_problems[:10]:
        print(f"  label problem: {problem}")
    if s.failures:
        print(f"  {s.n_failed} files could not be indexed:")
        for path, reason in s.failures[:50]:
            print(f"    {path}: {reason}")
        if s.n_failed > 50:
            print(f"    ... and {s.n_failed - 50} more (soundatlas info --json lists all)")


def cmd_info(args) -> int:
    from soundatlas.atlas import Atlas
    from soundatlas.evaluate import sorted_labels

    path = _atlas_dir(args)
    with Atlas.open(path) as atlas:
        info = {
            "atlas": str(path),
            "library": str(atlas.library),
            "n_samples": atlas.n_samples(),
            "n_frames": atlas.n_frames_total(),
            "cqt": atlas.cqt_params.to_dict(),
            "labels": {k: {v: values[v] for v in sorted_labels(values)}
                       for k, values in atlas.label_summary().items()},
            "failures": [{"path": p, "reason": r} for p, r in atlas.failures()],
            "disk_bytes": atlas.disk_size(),
            "last_index": atlas.last_run("index"),
        }
    if args.json:
        _print_json(info)
        return EXIT_OK
    print(f"atlas    {info['atlas']}")
    print(f"library  {info['library']}")
    print(f"samples  {info['n_samples']}  ({info['n_frames']} frames, "
          f"{info['n_frames'] / 20 / 3600:.2f} h analysed)")
    print(f"disk     {_human_bytes(info['disk_bytes'])}")
    run = info["last_index"]
    if run:
        print(f"last index run: {run['status']} ({run['n_done']}/{run['n_total']} files)")
    for key, values in info["labels"].items():  # in sorted_labels order
        shown = ", ".join(f"{v} ({n})" for v, n in list(values.items())[:12])
        more = f", ... {len(values) - 12} more" if len(values) > 12 else ""
        print(f"label {key}: {len(values)} values: {shown}{more}")
    if info["failures"]:
        print(f"failures ({len(info['failures'])}):")
        for f in info["failures"]:
            print(f"  {f['path']}: {f['reason']}")
    return EXIT_OK


def cmd_cqt(args) -> int:
    import numpy as np

    from soundatlas import audio
    from soundatlas.cqt import PAPER_CQT, cqt

    a = audio.load(args.file, sr=PAPER_CQT.sr, max_duration=args.max_duration)
    C = cqt(a.y)
    out = Path(args.output)
    try:
        np.save(out, C)
    except OSError as exc:
        raise SoundAtlasError(f"cannot write {out}: {exc.strerror or exc}") from exc
    result = {"file": str(args.file), "output": str(out), "shape": list(C.shape),
              "duration": a.duration, "truncated": a.truncated}
    if args.json:
        _print_json(result)
    else:
        note = f" (first {a.duration:g} s of {a.file_duration:g} s)" if a.truncated else ""
        print(f"{out}: {C.shape[0]} frames x {C.shape[1]} bins, log(50|C|+1), float32{note}")
    return EXIT_OK


def _open_atlas(args, *, write: bool = False):
    from soundatlas.atlas import Atlas

    return Atlas.open(_atlas_dir(args), write=write)


def train_settings(args):
    """The TrainSettings a ``soundatlas train`` command line asks for: the preset's, overridden."""
    from soundatlas.augment import parse_augment
    from soundatlas.train import settings_for

    return settings_for(args.preset, iterations=args.iterations, lr=args.lr,
                        batch_size=args.batch_size, threads=args.threads,
                        checkpoint_every=args.checkpoint_every, valid_every=args.valid_every,
                        precision=args.precision, optimizer=args.optimizer,
                        momentum=args.momentum, schedule=args.schedule, warmup=args.warmup,
                        standardize=args.standardize, fused_pool=args.fused_pool,
                        noise_rng=args.noise_rng, augment=parse_augment(args.augment))


def _neighbourhood_spec(text: str) -> str:
    """``train -n``: checked here, so a bad one is a usage error naming the option."""
    from soundatlas.neighbourhoods import parse_neighbourhood

    try:
        parse_neighbourhood(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return text


def _augment_spec(text: str) -> str:
    """``train --augment``: checked here, so a bad one is a usage error naming the option."""
    from soundatlas.augment import Augment

    try:
        Augment.from_spec(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return text


def cmd_train(args) -> int:
    from soundatlas.train import train

    settings = train_settings(args)
    with _open_atlas(args, write=True) as atlas, \
            _progress_bar(args, desc=f"training {args.neighbourhood}", unit="it") as bar:
        last = {}

        def progress(done, total, stats):
            last.update(stats)
            shown = {"loss": f"{stats['loss']:.4f}", "triples/s": f"{stats['triples_per_s']:.0f}"}
            if stats.get("valid_loss") is not None:
                shown["valid"] = f"{stats['valid_loss']:.4f}"
            bar(done, total, **shown)

        result = train(atlas, neighbourhood=args.neighbourhood, label=args.label,
                       settings=settings, seed=args.seed, name=args.name, dims=args.dims,
                       resume=args.resume, device=args.device, progress=progress,
                       stop_after=args.stop_after, init_from=args.init_from)
    out = {"name": result.name, "directory": str(result.directory), "iterations": result.iterations,
           "of": settings.iterations, "seconds": round(result.seconds, 1),
           "cpu_seconds": round(result.cpu_seconds, 1), "resumed_from": result.resumed_from,
           "history": result.history, "neighbourhood": result.neighbourhood}
    if args.json:
        _print_json(out)
    else:
        done = result.iterations >= settings.iterations
        state = "trained" if done else "paused (resume with --resume)"
        last_log = result.history[-1] if result.history else {}
        print(f"{state}: model {result.name}, {result.iterations}/{settings.iterations} "
              f"iterations in {result.seconds:.0f} s; train loss {last_log.get('train_loss', float('nan')):.4f}, "
              f"validation loss {last_log.get('valid_loss') or float('nan'):.4f}")
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
    return EXIT_OK


def cmd_embed(args) -> int:
    from soundatlas.artifact import resolve_model
    from soundatlas.embed import embed_atlas, ensure_registered

    with _open_atlas(args, write=True) as atlas:
        artifact, registration = resolve_model(atlas, args.model)
        model_id = ensure_registered(atlas, artifact, registration)
        with _progress_bar(args, desc=f"embedding ({artifact.name})", unit="file") as progress:
            summary = embed_atlas(atlas, artifact, model_id, progress=progress)
    if args.json:
        _print_json(_as_dict(summary))
    else:
        print(f"model {summary.model}: embedded {summary.n_embedded} samples "
              f"({summary.n_frames} frames) in {summary.seconds:.1f} s; "
              f"{summary.n_already} already had embeddings"
              + (f"; {summary.n_vectors} similarity vectors ({summary.similarity})"
                 if summary.n_vectors else ""))
    return EXIT_OK


def cmd_models(args) -> int:
    from soundatlas.artifact import CONFIG, SHIPPED_MODELS

    rows = []
    atlas_dir = _atlas_dir(args)
    if (atlas_dir / "atlas.sqlite").is_file():
        with _open_atlas(args) as atlas:
            for m in atlas.models():
                c = m["config"]
                rows.append({"name": m["name"], "where": "atlas", "neighbourhood":
                             c.get("neighbourhood", {}).get("name"), "preset": c.get("preset"),
                             "iterations": c.get("training", {}).get("iterations"),
                             "n_embedded": m["n_embedded"], "metrics": c.get("metrics", {})})
    for d in sorted(SHIPPED_MODELS.glob("*")):
        if (d / CONFIG).is_file() and not any(r["name"] == d.name for r in rows):
            c = json.loads((d / CONFIG).read_text())
            rows.append({"name": d.name, "where": "shipped", "neighbourhood":
                         c.get("neighbourhood", {}).get("name"), "preset": c.get("preset"),
                         "iterations": c.get("training", {}).get("iterations"),
                         "n_embedded": None, "metrics": c.get("metrics", {})})
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no models (train one with `soundatlas train`)")
    for r in rows:
        emb = "" if r["n_embedded"] is None else f", {r['n_embedded']} samples embedded"
        print(f"{r['name']:32s} {r['where']:8s} {r['neighbourhood'] or '?':20s} "
              f"{r['preset'] or '?'} ({r['iterations']} it){emb}")
    return EXIT_OK


def cmd_map(args) -> int:
    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas, default_atlas_dir
    from soundatlas.embed import embed_atlas, ensure_registered

    index_summary = _index(args)
    if not args.json:
        _print_index_summary(index_summary)
    atlas_dir = Path(args.atlas) if args.atlas else default_atlas_dir(args.library)
    with Atlas.open(atlas_dir, write=True) as atlas:
        artifact, registration = resolve_model(atlas, args.model)
        model_id = ensure_registered(atlas, artifact, registration)
        with _progress_bar(args, desc=f"embedding ({artifact.name})", unit="file") as progress:
            summary = embed_atlas(atlas, artifact, model_id, progress=progress)
    if args.json:
        _print_json({"index": index_summary.to_dict(), "embed": _as_dict(summary)})
    else:
        print(f"mapped with model {summary.model}: {summary.n_embedded} new, "
              f"{summary.n_already} already embedded ({summary.seconds:.1f} s)")
    return EXIT_OK


def cmd_adapt(args) -> int:
    from soundatlas.adapt import AdaptSettings, adapt

    settings = AdaptSettings(iterations=args.iterations, lr=args.lr,
                             neighbourhood=args.neighbourhood)
    with _open_atlas(args, write=True) as atlas, \
            _progress_bar(args, desc="adapting", unit="it") as train_bar, \
            _progress_bar(args, desc="embedding", unit="file") as embed_bar:

        def train_progress(done, total, stats):
            train_bar(done, total, loss=f"{stats['loss']:.4f}",
                      **{"triples/s": f"{stats['triples_per_s']:.0f}"})

        summary = adapt(atlas, base=args.model, name=args.name, settings=settings,
                        seed=args.seed, resume=args.resume, stop_after=args.stop_after,
                        threads=args.threads, train_progress=train_progress,
                        embed_progress=embed_bar)
    if args.json:
        _print_json(summary)
    elif not summary["done"]:
        print(f"adaptation {summary['name']} paused at iteration {summary['iterations']} of "
              f"{summary['of']}; continue with `soundatlas adapt --atlas {_atlas_dir(args)} "
              f"--resume`")
    else:
        print(f"adapted {summary['base']} to this library without labels "
              f"({summary['neighbourhood']}, augment {summary['augment']}): model "
              f"{summary['name']}, {summary['iterations']} iterations in "
              f"{summary['train_seconds']:.0f} s; embedded {summary['n_embedded']} samples in "
              f"{summary['embed_seconds']:.0f} s. The page's model switcher offers "
              f"{summary['base']} and {summary['name']}.")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from contextlib import ExitStack

    from soundatlas.atlas import Atlas
    from soundatlas.evaluate import evaluate

    baselines = _baseline_list(args.baselines)
    with ExitStack() as stack:
        atlas = stack.enter_context(_open_atlas(args))
        reference = (stack.enter_context(Atlas.open(Path(args.reference)))
                     if args.reference else None)
        bar = stack.enter_context(_progress_bar(args, desc="evaluating", unit="stage"))
        result = evaluate(atlas, args.model or (), baselines=baselines, labels=args.labels,
                          reference=reference,
                          n_per_file=args.frames_per_file, n_analogies=args.analogies,
                          seed=args.seed, progress=lambda d, t, stage: bar(d, t, stage=stage))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        _print_json(result)
    else:
        print(format_scores(result))
    return EXIT_OK


def cmd_report(args) -> int:
    from soundatlas.report import write_report

    baselines = _baseline_list(args.baselines)
    with _open_atlas(args) as atlas, _progress_bar(args, desc="report", unit="stage") as bar:
        models = args.models or [m["name"] for m in atlas.models()
                                 if m["n_embedded"] >= atlas.n_samples() > 0]
        if not models:
            raise SoundAtlasError("no fully embedded model in the atlas; run `soundatlas embed` "
                                  "first or name models with --models")
        page = write_report(atlas, args.output, models=models, baselines=baselines,
                            seed=args.seed, n_per_file=args.frames_per_file,
                            n_analogies=args.analogies, labels=args.labels,
                            progress=lambda d, t, stage: bar(d, t, stage=stage))
    if args.json:
        _print_json({"page": str(page), "models": models, "baselines": baselines})
    else:
        print(f"report written: {page}")
    return EXIT_OK


def _listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` (0: a free port), as uvicorn would bind it."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    sock.set_inheritable(True)
    return sock


def cmd_serve(args) -> int:
    import asyncio

    from soundatlas.web.app import (
        call,
        create_app,
        describe_response,
        end_streams,
        is_loopback_host,
    )

    if args.port > 65535:
        raise UsageError(f"--port {args.port} must be at most 65535")
    loopback = is_loopback_host(args.host)
    allowed = {"127.0.0.1", "localhost", "::1", args.host} if loopback else None
    live = args.get is None  # one in-process request needs no OSC sockets
    app = create_app(_atlas_dir(args), model=args.model, allowed_hosts=allowed,
                     osc_out=args.osc_out if live else None,
                     osc_in=args.osc_in if live else None)
    if args.get is not None:
        target = args.get if args.get.startswith("/") else "/" + args.get
        status, headers, body = asyncio.run(call(app, "GET", target))
        print(describe_response(status, headers, body))
        return EXIT_OK if 200 <= status < 300 else EXIT_FAIL
    import uvicorn

    if not loopback:
        print(f"soundatlas serve: warning: {args.host} is not a loopback address: anyone who can "
              "reach this machine can read the library's files", file=sys.stderr)
    sock = _listening_socket(args.host, args.port)
    port = sock.getsockname()[1]  # --port 0: the free port the system chose
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {_atlas_dir(args)} at http://{shown}:{port}/ "
          f"(API: http://{shown}:{port}/docs); Ctrl-C stops", flush=True)
    web = app.state.web
    if web.osc_out is not None:
        print(f"OSC out: the page's hover, select, play and selection go to {web.osc_out.endpoint}")
    if web.osc_in is not None:
        print(f"OSC in: listening on {web.osc_in.endpoint} for /soundatlas/cursor x y z, "
              "/soundatlas/cursor/norm u v w, /soundatlas/play id, /soundatlas/select id")
    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # Ctrl-C: end the page's event streams first
            end_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=2)
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has stopped cleanly
        pass
    print("stopped")
    return EXIT_OK


def _osc_out(text: str) -> str:
    return _endpoint(text, None)


def _osc_in(text: str) -> str:
    return _endpoint(text, "127.0.0.1")


def _endpoint(text: str, default_host: str | None) -> str:
    """An OSC address checked here, so a bad one is a usage error naming the option."""
    from soundatlas.web.osc import parse_endpoint

    try:
        return str(parse_endpoint(text, what="", default_host=default_host))
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


def _overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 0.95:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 0.95")
    return value


def _check_output(path: str, suffix: str) -> Path:
    """``--output``: a new or existing file ending in ``suffix`` in a folder that exists."""
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise UsageError(f"--output {out} must end in {suffix}")
    if out.is_dir():
        raise UsageError(f"--output {out} is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"--output {out}: the folder {out.parent} does not exist")
    return out


def _frame_index(args, atlas, registration):
    from soundatlas.synth import FrameIndex

    with _progress_bar(args, desc="frame index", unit="sample") as progress:
        index = FrameIndex.load(atlas, registration, progress=progress)
        index.tree  # noqa: B018 - build the k-d tree here, so the render time is the render's
    return index


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
            print(f"    {path}: {reason}")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_synth(args) -> int:
    import dataclasses

    from soundatlas import synth

    out = _check_output(args.output, ".wav")
    if (args.path is None) == (args.walk is None):
        raise UsageError("give a path file (--path PATH.json) or a generated walk "
                         "(--walk random|knn), one of them")
    if args.path is not None and args.duration is not None:
        raise UsageError("--duration is for --walk; a path file's durations set its length")
    if args.path is not None and args.seed is not None:
        raise UsageError("--seed is for --walk; a path file is rendered as it is")
    if args.walk is not None and args.glide:
        raise UsageError("--glide is for --path (a random walk glides, a knn walk holds frames)")
    path = synth.read_path(args.path) if args.path else None  # a bad file fails before the atlas
    if path is not None and args.glide:
        path = dataclasses.replace(path, glide=True)
    seed = 0 if args.seed is None else args.seed
    with _open_atlas(args) as atlas:
        registration = synth.embedded_model(atlas, args.model)
        index = _frame_index(args, atlas, registration)
        excluded = synth.resolve_exclusions(atlas, args.exclude or ())
        if path is None:
            duration = 30.0 if args.duration is None else args.duration
            on = index.without(excluded)
            if args.walk == "random":
                path = synth.random_walk(on, duration=duration, seed=seed)
            else:
                path = synth.knn_walk(on, duration=duration, seed=seed, k=args.k,
                                      step=args.grain * (1 - args.overlap))
        result = synth.render(atlas, registration, path, sr=args.sr, grain=args.grain,
                              overlap=args.overlap, exclude=excluded, index=index)
    synth.write_wav(out, result.y, result.sr, fmt=args.format)
    if args.json:
        _print_json({"output": str(out), "format": synth.WAV_SUBTYPES[args.format][1],
                     "path": args.path, "walk": args.walk, "seed": seed if args.walk else None,
                     "n_points": len(path.points), "index_from_cache": index.from_cache,
                     "n_index_frames": len(index), **result.summary()})
    else:
        what = f"path {args.path}" if args.path else f"{args.walk} walk, seed {seed}"
        _print_rendering(result, out, args.format, index, f" ({what})")
    return EXIT_OK


def cmd_mosaic(args) -> int:
    from soundatlas import synth

    out = _check_output(args.output, ".wav")
    with _open_atlas(args) as atlas:
        registration = synth.embedded_model(atlas, args.model)
        index = _frame_index(args, atlas, registration)
        result, target = synth.mosaic(atlas, registration["name"], args.target,
                                      exclude_self=args.exclude_self, exclude=args.exclude or (),
                                      sr=args.sr, grain=args.grain, overlap=args.overlap,
                                      index=index)
    synth.write_wav(out, result.y, result.sr, fmt=args.format)
    if args.json:
        target = {k: v for k, v in target.items() if k != "excluded_ids"}
        _print_json({"output": str(out), "format": synth.WAV_SUBTYPES[args.format][1],
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


def cmd_trajectory(args) -> int:
    from soundatlas import synth

    out = _check_output(args.output, ".png")
    with _open_atlas(args) as atlas:
        registration = synth.embedded_model(atlas, args.model)
        rec = synth.find_sample(atlas, args.sample)
        synth.plot_trajectory(atlas, registration, rec, out)
    result = {"output": str(out), "sample": rec.id, "path": rec.path,
              "model": registration["name"], "n_frames": rec.n_frames,
              "duration": rec.duration}
    if args.json:
        _print_json(result)
    else:
        print(f"wrote {out}: trajectory of {rec.path} (sample {rec.id}, {rec.n_frames} frames, "
              f"{rec.duration:.2f} s) under model {registration['name']}")
    return EXIT_OK


def _baseline_list(text: str) -> list[str]:
    from soundatlas.baselines import BASELINES

    if text in ("", "none"):
        return []
    if text == "all":
        return list(BASELINES)
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BASELINES]
    if bad:
        raise UsageError(f"unknown baseline {bad[0]!r} (known: {', '.join(BASELINES)}, all, none)")
    return names


def format_scores(result: dict) -> str:
    """A plain-text table of the headline numbers of an evaluation."""
    labels = result["protocol"]["labels"]
    head = ["map"] + [f"{k} acc" for k in labels] + [f"{k} P@10" for k in labels] \
        + [f"{k} P@10 sim" for k in labels] \
        + [f"{k} MAP@R" for k in labels] + ["trust@10", "cont@10", "analogy i/p"]
    rows = []
    for name, r in result["results"].items():
        if "error" in r:
            rows.append([name, f"error: {r['error']}"])
            continue
        row = [name]
        row += [_fmt(r["accuracy"].get(k, {}).get("test_accuracy")) for k in labels]
        row += [_fmt(r["retrieval"].get(k, {}).get("precision_at_k")) for k in labels]
        sim = r.get("retrieval_similarity", {})
        row += [_fmt(sim.get(k, {}).get("precision_at_k") if isinstance(sim.get(k), dict)
                     else None) for k in labels]
        row += [_fmt(r["retrieval"].get(k, {}).get("map_at_r")) for k in labels]
        m = r.get("manifold", {})
        row += [_fmt(m.get("trustworthiness", {}).get(10)), _fmt(m.get("continuity", {}).get(10))]
        a = r.get("analogies", {})
        row.append(f"{_fmt(a.get('instrument', {}).get('win_rate'))}/"
                   f"{_fmt(a.get('pitch', {}).get('win_rate'))}" if "instrument" in a else "-")
        rows.append(row)
    width = max(len(r[0]) for r in rows + [head])
    cols = [max(11, len(h)) for h in head[1:]]  # every label named in full
    lines = ["  ".join([head[0].ljust(width)] + [h.rjust(w) for h, w in zip(head[1:], cols)])]
    for row in rows:
        lines.append("  ".join([row[0].ljust(width)] +
                               [c.rjust(w) for c, w in zip(row[1:], cols + [11] * len(row))]))
    p = result["protocol"]
    lines.append(f"({p['n_frames']['test']} test frames of {p['n_samples']} samples, "
                 f"{p['frames_per_file']} per file; trust/cont: the test frames' map against "
                 "their input windows at k=10; analogy: win rate of a1 - a0 + b0; P@10 sim: "
                 "precision at 10 in the model's similarity space, which the page's nearest "
                 "sounds search)")
    if p.get("protocol") == "cross-bank":
        lines.append(f"cross-bank: k-NN fitted on {p['n_frames']['train']} training frames of "
                     f"{p['reference']['atlas']} (k chosen on {p['n_frames']['valid']} of its "
                     "validation frames); every frame of this atlas is a test frame")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _as_dict(obj):
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON results")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = argparse.ArgumentParser(
        prog="soundatlas",
        description="Navigable 3-D maps of large sound-sample libraries.",
        epilog="Run `soundatlas COMMAND --help` for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"soundatlas {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo-library", parents=[common], help="render a labelled sound library",
                       description="Render a labelled library: the 24-class demo instrument set, "
                       "the 128 General MIDI programs or the drum kits of a SoundFont (with "
                       "FluidSynth), or procedural synth sounds. One file per note; "
                       "OUT/metadata.csv lists every file under OUT with its labels, "
                       "OUT/silent.csv the notes not written because the preset has no sound "
                       "for them. Sets other than demo go to OUT/<set>/<bank>/.")
    d.add_argument("out", metavar="OUT", help="output folder")
    d.add_argument("--set", choices=("demo", "gm", "drums", "synth", "all"), default="demo",
                   help="demo: the 24 instrument classes (OUT/<instrument>/); gm: the 128 GM "
                   "programs of bank 0; drums: the GS drum kits of bank 128 x GM percussion keys "
                   "35-81; synth: procedural one-shots (no SoundFont); all: gm + drums + synth "
                   "(default: demo)")
    d.add_argument("--soundfont", metavar="PATH",
                   help="SoundFont (.sf2 or .sf3) to render with (default: FluidR3_GM from "
                   "Debian's fluid-soundfont-gm)")
    d.add_argument("--classes", nargs="+", metavar="NAME",
                   help="only these instrument classes (demo: default all 24) or GM program "
                   "names (gm: default all 128, e.g. violin acoustic_grand_piano)")
    d.add_argument("--velocities", nargs="+", type=int, default=[40, 80, 120], metavar="V",
                   help="MIDI velocities (default: 40 80 120)")
    d.add_argument("--pitch-step", type=_positive_int, default=5, metavar="N",
                   help="gm: every Nth semitone of each program's range (default: 5, 7,218 "
                   "notes; 1: every semitone, 36,072 notes)")
    d.add_argument("--kits", nargs="+", metavar="KIT",
                   help="drums: only these kits (standard room power electronic tr808 jazz "
                   "brush orchestra sfx; default: every one the SoundFont has)")
    d.add_argument("--drum-keys", nargs="+", type=int, metavar="KEY",
                   help="drums: only these keys (default: GM percussion 35-81; sfx kit 39-84)")
    d.add_argument("--count", type=_positive_int, default=2000, metavar="N",
                   help="synth: how many procedural one-shots (default: 2000)")
    d.add_argument("--seed", type=_nonnegative_int, default=0, metavar="N",
                   help="synth: seed of the procedural sounds (default: 0)")
    d.add_argument("--format", choices=("wav", "flac"), default="wav",
                   help="file format, 16-bit (default: wav)")
    d.add_argument("--sample-rate", type=int, default=44100, metavar="HZ",
                   help="sample rate of the written files (default: 44100)")
    d.add_argument("--jobs", type=_positive_int, metavar="N", help="processes (default: one per core)")
    d.add_argument("-v", "--verbose", action="store_true",
                   help="list every note not written (silent notes are always in OUT/silent.csv)")
    d.set_defaults(func=cmd_demo_library)

    i = sub.add_parser("index", parents=[common], help="scan a library and index it into an atlas",
                       description="Scan LIBRARY recursively, decode every audio file, compute its "
                       "constant-Q features and store them in the atlas. Incremental: only new "
                       "or changed files are analysed, moved files are recognised by content, "
                       "deleted ones forgotten. Safe to interrupt and re-run.")
    i.add_argument("library", metavar="LIBRARY", help="folder of samples")
    i.add_argument("--atlas", metavar="DIR", help="atlas directory (default: LIBRARY/.soundatlas)")
    i.add_argument("--labels", metavar="CSV",
                   help="CSV manifest with a 'path' column; other columns become labels "
                   "(default: LIBRARY/metadata.csv when it exists)")
    i.add_argument("--name-pattern", metavar="REGEX",
                   help="labels from file names: a regex with named groups, or 'note' (note "
                   "names such as C#4/Db4 into pitch) or 'midi' (a MIDI number into pitch)")
    i.add_argument("--no-folder-labels", action="store_true",
                   help="do not record each file's parent folder as label 'folder'")
    i.add_argument("--max-duration", type=_duration_or_none, default=30.0, metavar="SECONDS",
                   help="analyse only the first SECONDS of longer files ('none': no limit; "
                   "default: 30)")
    i.add_argument("--jobs", type=_positive_int, metavar="N", help="processes (default: one per core)")
    i.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                   help="files per batch and per commit (default: 32)")
    i.add_argument("--cqt-kernel", choices=["folded", "multirate"], metavar="KERNEL",
                   help="how a new atlas computes the CQT: multirate (librosa's algorithm, "
                   "batched) or folded (one FFT per clip); default: the kernel of the model "
                   "that will embed it (map --model, else the shipped default)")
    i.add_argument("--refresh-features", action="store_true",
                   help="analyse every file again with the current CQT kernel (multirate) when "
                   "the atlas's features were made with another (an out-of-date atlas names "
                   "this)")
    i.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the batches on a Dask distributed cluster (e.g. tcp://host:8786); "
                   "its workers must see the library at the same path")
    i.set_defaults(func=cmd_index)

    n = sub.add_parser("info", parents=[common], help="what an atlas holds",
                       description="Counts, labels with their values, failures with reasons and "
                       "disk size of an atlas.")
    n.add_argument("--atlas", metavar="DIR",
                   help="atlas directory (default: $SOUNDATLAS_ATLAS or ./.soundatlas)")
    n.set_defaults(func=cmd_info)

    c = sub.add_parser("cqt", parents=[common], help="write the constant-Q features of one file",
                       description="Decode FILE to 16 kHz mono and write its paper CQT, "
                       "log(50|C|+1), as a (frames x 192) float32 .npy array.")
    c.add_argument("file", metavar="FILE", help="audio file")
    c.add_argument("--output", "-o", required=True, metavar="F.npy", help="where to write")
    c.add_argument("--max-duration", type=_duration_or_none, default=None, metavar="SECONDS",
                   help="analyse only the first SECONDS (default: the whole file)")
    c.set_defaults(func=cmd_cqt)

    atlas_help = "atlas directory (default: $SOUNDATLAS_ATLAS or ./.soundatlas)"

    t = sub.add_parser("train", parents=[common], help="learn a map from a neighbourhood",
                       description="Train the network on the atlas's training split with triples "
                       "drawn from a neighbourhood; checkpoints as it goes; the model is saved "
                       "and registered in the atlas.")
    t.add_argument("--atlas", metavar="DIR", help=atlas_help)
    t.add_argument("--neighbourhood", "-n", required=True, metavar="SPEC",
                   type=_neighbourhood_spec,
                   help="input-knn | instrument | pitch | instrument-pitch | instrument-pitch-2 | "
                   "label:KEY (any label column, e.g. label:family) | augment-pair (the same "
                   "sound under two augmentations); several at once as a weighted mixture, "
                   "NAME:WEIGHT,..., e.g. instrument:1,label:family:1,input-knn:0.5,"
                   "augment-pair:0.5 (each triple's part drawn by weight; a part these data "
                   "cannot serve is left out with a message)")
    t.add_argument("--label", metavar="KEY",
                   help="label column playing the instrument's part (e.g. 'folder'; default: "
                   "instrument); a single neighbourhood only")
    t.add_argument("--augment", metavar="SPEC", type=_augment_spec,
                   help="augmentation of the training windows: none (the default, and the "
                   "paper's), default (all six), or a list of NAME[=RANGE][@P]: gain (+-dB, 6), "
                   "tilt (+-dB/octave, 3), room (RT60 LOW:HIGH s, 0.1:0.8), noise (SNR LOW:HIGH "
                   "dB, 10:40), shift (+-frames, 2), detune (+-semitones, 0.5), P the "
                   "probability per window (shift 0.5, room 0.3, detune 0.3, tilt 0.5, gain "
                   "0.5, noise 0.3), e.g. gain=9,noise=20:40@0.5")
    t.add_argument("--init-from", metavar="MODEL",
                   help="start from this model's weights, input statistics and architecture "
                   "(a model name or directory) instead of a random network: fine-tuning")
    t.add_argument("--preset", choices=["paper", "fast"], default="fast",
                   help="paper: SGD lr 0.02, 32 triples, 50,000 iterations (the reference); "
                   "fast: ours, see docs/DESIGN.md §6 (default)")
    t.add_argument("--iterations", type=_positive_int, metavar="N", help="override the preset's")
    t.add_argument("--lr", type=_positive_float, metavar="LR", help="override the preset's")
    t.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="triples per step (override the preset's)")
    t.add_argument("--dims", type=_positive_int, metavar="D",
                   help="output dimensions (default: 3, or --init-from's)")
    t.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    t.add_argument("--name", metavar="NAME",
                   help="model name (default: NEIGHBOURHOOD-PRESET-sSEED)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint of the same name and settings")
    t.add_argument("--stop-after", type=_positive_int, metavar="N",
                   help="stop (resumable) after N iterations of this invocation")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="iterations between checkpoints (override the preset's)")
    t.add_argument("--valid-every", type=_positive_int, metavar="N",
                   help="iterations between validation losses (override the preset's)")
    t.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch threads (default: all cores)")
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to train (default: cpu)")
    t.add_argument("--optimizer", choices=["sgd", "adam"], help="override the preset's")
    t.add_argument("--momentum", type=float, metavar="M", help="SGD momentum (override the preset's)")
    t.add_argument("--schedule", choices=["constant", "cosine"],
                   help="learning-rate schedule after warm-up (override the preset's)")
    t.add_argument("--warmup", type=_nonnegative_int, metavar="N",
                   help="iterations of linear learning-rate warm-up (override the preset's)")
    t.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                   help="per-bin standardisation of the input (not in the paper; on in the fast "
                   "preset, off in the paper preset)")
    t.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                   help="arithmetic of the training pass: fp32 (the reference), bf16 (autocast), "
                   "auto (bf16 where the CPU has it natively); override the preset's")
    t.add_argument("--fused-pool", choices=["on", "off", "auto"],
                   help="each tanh + max-pool pair as one faster step that pools first: the same "
                   "forward, a gradient that differs only where tanh rounds two values equal; "
                   "auto: on the CPU only (the fast preset's); off: the paper preset's")
    t.add_argument("--noise-rng", choices=["numpy", "torch"],
                   help="generator of the training noise: numpy (the paper preset's) or torch "
                   "(the fast preset's: the same distribution, faster)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("embed", parents=[common], help="embed the atlas's samples with a model",
                       description="Compute each sample's trajectory (one 3-D point per frame) "
                       "and its point on the map; only samples without an embedding for the "
                       "model are computed.")
    e.add_argument("--atlas", metavar="DIR", help=atlas_help)
    e.add_argument("--model", "-m", metavar="NAME",
                   help="a model of the atlas, a shipped model or a model directory "
                   "(default: the shipped 'default')")
    e.set_defaults(func=cmd_embed)

    m = sub.add_parser("models", parents=[common], help="list the atlas's and the shipped models",
                       description="Models registered in the atlas and shipped with soundatlas.")
    m.add_argument("--atlas", metavar="DIR", help=atlas_help)
    m.set_defaults(func=cmd_models)

    mp = sub.add_parser("map", parents=[common], help="index a library and embed it (one step)",
                        description="`soundatlas index LIBRARY` followed by `soundatlas embed` "
                        "with the shipped default model (or --model).")
    for action in i._actions:  # noqa: SLF001 - the same options as index
        if action.dest in {"help", "json", "quiet"}:
            continue
        kwargs = {k: getattr(action, k) for k in ("help", "default", "metavar", "type", "choices")
                  if getattr(action, k, None) is not None}
        if action.option_strings:
            if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
                mp.add_argument(*action.option_strings, action="store_true", help=action.help)
            else:
                mp.add_argument(*action.option_strings, dest=action.dest, **kwargs)
        else:
            mp.add_argument(action.dest, **{k: v for k, v in kwargs.items() if k != "default"})
    mp.add_argument("--model", "-m", metavar="NAME",
                    help="model to embed with (default: the shipped 'default')")
    mp.set_defaults(func=cmd_map)

    ad = sub.add_parser("adapt", parents=[common],
                        help="fine-tune a model to this library without labels, and embed",
                        description="Label-free adaptation: fine-tune a model (default: the "
                        "shipped 'default') on the atlas's own sounds with the two "
                        "neighbourhoods that need no labels (input-space neighbours and the "
                        "same sound under two augmentations), register it beside its base as "
                        "BASE-adapted and embed every sample with it. Resumable (--resume).")
    ad.add_argument("--atlas", metavar="DIR", help=atlas_help)
    ad.add_argument("--model", "-m", default="default", metavar="NAME",
                    help="the model to start from (default: the shipped 'default')")
    ad.add_argument("--name", metavar="NAME", help="the adapted model's name (default: "
                    "MODEL-adapted)")
    ad.add_argument("--iterations", type=_positive_int, default=3000, metavar="N",
                    help="training steps of 32 triples (default: 3000)")
    ad.add_argument("--lr", type=_positive_float, default=0.01, metavar="LR",
                    help="learning rate of the fine-tuning (default: 0.01)")
    ad.add_argument("--neighbourhood", "-n", default=ADAPT_NEIGHBOURHOOD, metavar="SPEC",
                    help="label-free neighbourhoods with weights: input-knn (input-space "
                    "neighbours), teacher-knn (neighbours in the base model's hidden layer), "
                    f"augment-pair (default: {ADAPT_NEIGHBOURHOOD})")
    ad.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    ad.add_argument("--threads", type=_positive_int, metavar="N",
                    help="torch threads (default: all cores)")
    ad.add_argument("--resume", action="store_true",
                    help="continue an interrupted adaptation from its checkpoint")
    ad.add_argument("--stop-after", type=_positive_int, metavar="N",
                    help="pause after N iterations of this call (resumable)")
    ad.set_defaults(func=cmd_adapt)

    # what evaluate and report share: the same scoring, so the same options
    scoring = argparse.ArgumentParser(add_help=False)
    scoring.add_argument("--baselines", default="all", metavar="LIST",
                         help="comma-separated baselines: pca, pca-lda, umap, input; 'all' "
                         "(default) or 'none'")
    scoring.add_argument("--analogies", type=_nonnegative_int, default=500, metavar="N",
                         help="random analogy triples per map (default: 500; 0: none)")
    scoring.add_argument("--frames-per-file", type=_positive_int, default=8, metavar="N",
                         help="energy-weighted frames per file (default: 8)")
    scoring.add_argument("--seed", type=int, default=0, metavar="N",
                         help="random seed (default: 0)")
    scoring.add_argument("--labels", nargs="+", metavar="KEY",
                         help="label keys to score (default: instrument and pitch, those of the "
                         "two the atlas has, else folder); A+B scores the pair as one label, e.g. "
                         "instrument+pitch, what the instrument-pitch neighbourhood learns")

    ev = sub.add_parser("evaluate", parents=[common, scoring],
                        help="score models beside baselines (k-NN, retrieval, analogies, ...)",
                        description="The reference protocol (k-NN on frame embeddings of "
                        "training files, k chosen on validation, accuracy on test frames) plus "
                        "confusion matrices, retrieval (P@10, MAP@R), trustworthiness and "
                        "continuity, and acoustic analogies, for each model and baseline on the "
                        "same frames and split.")
    ev.add_argument("--atlas", metavar="DIR", help=atlas_help)
    ev.add_argument("--model", "-m", action="append", metavar="NAME",
                    help="model to score (repeat for several; none: baselines only)")
    ev.add_argument("--output", "-o", metavar="FILE", help="also write the full JSON result here")
    ev.add_argument("--reference", metavar="ATLAS",
                    help="cross-bank protocol: fit the k-NN and every baseline on this other "
                    "atlas's training frames (k chosen on its validation frames) and score every "
                    "frame of --atlas; each model must be embedded in both with the same weights")
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("report", parents=[common, scoring], help="write an HTML report of models",
                        description="Evaluate models beside baselines and write a self-contained "
                        "HTML page with tables and figures (3-D views, per-class accuracy, "
                        "confusion matrices, trajectories, analogies) into a directory.")
    rp.add_argument("--atlas", metavar="DIR", help=atlas_help)
    rp.add_argument("--models", nargs="+", metavar="NAME",
                    help="models to report (default: every fully embedded model)")
    rp.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for index.html, evaluation.json and fig/")
    rp.set_defaults(func=cmd_report)

    sv = sub.add_parser("serve", help="serve the atlas's map and its API in a web browser",
                        description="Serve the atlas (read-only) over HTTP: the page at / and a "
                        "JSON/binary API under /api (listed at /docs). Binds 127.0.0.1 unless "
                        "told otherwise.")
    sv.add_argument("--atlas", metavar="DIR", help=atlas_help)
    sv.add_argument("--model", "-m", metavar="NAME",
                    help="model the page shows first (default: the first fully embedded one)")
    sv.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                    help="address to bind (default: 127.0.0.1; another address exposes the "
                    "library's files to the network)")
    sv.add_argument("--port", type=_nonnegative_int, default=8000, metavar="N",
                    help="port to listen on (default: 8000; 0: a free port, printed)")
    sv.add_argument("--get", metavar="/api/PATH",
                    help="answer this one GET in-process, print it and exit (0 for a 2xx "
                    "answer, 1 otherwise) without binding a port")
    sv.add_argument("--osc-out", type=_osc_out, metavar="HOST:PORT",
                    help="send the page's hover, select, play and selection events as OSC "
                    "messages (UDP) to HOST:PORT, e.g. 127.0.0.1:9000 (address space: README)")
    sv.add_argument("--osc-in", type=_osc_in, metavar="[HOST:]PORT",
                    help="listen for OSC (UDP) on PORT (host 127.0.0.1 unless given): "
                    "/soundatlas/cursor x y z moves a cursor in the page and plays the nearest "
                    "sample; also /soundatlas/cursor/norm u v w, /soundatlas/play id, "
                    "/soundatlas/select id")
    sv.set_defaults(func=cmd_serve)

    grain_kw = dict(type=_positive_float, default=0.5, metavar="SECONDS",
                    help="grain length (default: 0.5, the reference)")
    overlap_kw = dict(type=_overlap, default=0.5, metavar="FRACTION",
                      help="fraction of a grain shared with the next, 0 to 0.95 (default: 0.5, "
                      "the reference; 0.9 puts a grain on every frame)")
    sr_kw = dict(type=_positive_int, metavar="HZ",
                 help="output sample rate (default: the library's most common original rate)")
    format_kw = dict(choices=["pcm16", "float"], default="pcm16",
                     help="WAV sample format: pcm16 (16-bit PCM, default) or float (32-bit float)")
    exclude_kw = dict(nargs="+", action="extend", metavar="ITEM",
                      help="never use these samples: sample ids or folders/files relative to the "
                      "library (repeatable)")
    model_kw = dict(metavar="NAME", help="model whose map to use (default: 'default' when "
                    "embedded, else the first embedded model)")

    sy = sub.add_parser("synth", parents=[common], help="render a path through the map as audio",
                        description="Concatenative synthesis: each point of a path (a JSON file or "
                        "a generated walk) snaps to the nearest sounding frame of the whole "
                        "library, and grains of the original files around those frames are "
                        "overlap-added with a Hann window, loudness-matched and limited. Writes "
                        "a WAV file.")
    sy.add_argument("--atlas", metavar="DIR", help=atlas_help)
    sy.add_argument("--model", "-m", **model_kw)
    sy.add_argument("--path", metavar="PATH.json",
                    help='a path file: {"points": [[x, y, z], ...], "durations": [seconds, ...]} '
                    '(or one "duration" for every point; "glide": true to move between points)')
    sy.add_argument("--walk", choices=["random", "knn"],
                    help="generate the path instead: random (a smoothed random walk in the map's "
                    "bounding box) or knn (hops between neighbouring frames of other samples)")
    sy.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                    help="length of a --walk (default: 30)")
    sy.add_argument("--seed", type=int, metavar="N", help="seed of a --walk (default: 0)")
    sy.add_argument("--k", type=_positive_int, default=8, metavar="K",
                    help="neighbouring samples a knn walk chooses among (default: 8)")
    sy.add_argument("--glide", action="store_true",
                    help="move in straight lines between a path file's points instead of holding "
                    "each for its duration")
    sy.add_argument("--grain", **grain_kw)
    sy.add_argument("--overlap", **overlap_kw)
    sy.add_argument("--exclude", **exclude_kw)
    sy.add_argument("--sr", **sr_kw)
    sy.add_argument("--format", **format_kw)
    sy.add_argument("--output", "-o", required=True, metavar="OUT.wav", help="WAV file to write")
    sy.set_defaults(func=cmd_synth)

    mo = sub.add_parser("mosaic", parents=[common],
                        help="rebuild a sound from the library's grains",
                        description="Embed TARGET with the model exactly as a query by example "
                        "does, follow its trajectory with grains of the library's sounds (the "
                        "nearest sounding frame at each grain), each scaled to the target's own "
                        "loudness at that time. Writes a WAV file.")
    mo.add_argument("target", metavar="TARGET", help="audio file to rebuild")
    mo.add_argument("--atlas", metavar="DIR", help=atlas_help)
    mo.add_argument("--model", "-m", **model_kw)
    mo.add_argument("--exclude-self", action="store_true",
                    help="never use the target itself: samples with its content (hash) or at "
                    "its path in the library")
    mo.add_argument("--exclude", **exclude_kw)
    mo.add_argument("--grain", **grain_kw)
    mo.add_argument("--overlap", **overlap_kw)
    mo.add_argument("--sr", **sr_kw)
    mo.add_argument("--format", **format_kw)
    mo.add_argument("--output", "-o", required=True, metavar="OUT.wav", help="WAV file to write")
    mo.set_defaults(func=cmd_mosaic)

    tj = sub.add_parser("trajectory", parents=[common], help="draw one sample's trajectory",
                        description="Draw SAMPLE's trajectory (one point per frame) in 3-D over "
                        "the faint map, start, median frame and end marked, beside its "
                        "coordinates and loudness over time. Writes a PNG.")
    tj.add_argument("sample", metavar="SAMPLE",
                    help="a sample id or a path relative to the library")
    tj.add_argument("--atlas", metavar="DIR", help=atlas_help)
    tj.add_argument("--model", "-m", **model_kw)
    tj.add_argument("--output", "-o", required=True, metavar="FIG.png", help="PNG file to write")
    tj.set_defaults(func=cmd_trajectory)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"soundatlas {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SoundAtlasError as exc:
        print(f"soundatlas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"soundatlas {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
