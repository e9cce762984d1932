"""Commands that make and read a library and its atlas: ``demo-library``, ``index``, ``info``,
``cqt``.

``map`` (in :mod:`soundatlas.cli.learn`) indexes too: it takes :data:`INDEX_OPTIONS` and runs
:func:`run_index`.
"""

from __future__ import annotations

import argparse
import functools

from soundatlas.cli.common import (
    ATLAS,
    EXIT_FAIL,
    EXIT_OK,
    JOBS,
    SCHEDULER,
    UsageError,
    add_options,
    as_dict,
    atlas_dir,
    check_output,
    nonnegative_int,
    option,
    positive_float,
    positive_int,
    print_json,
    progress_bar,
    shown,
    writing,
)
from soundatlas.cqt_params import AS_STORED
from soundatlas.errors import SoundAtlasError
from soundatlas.text import counted, span

__all__ = ["register", "INDEX_OPTIONS", "run_index", "executor_for", "print_index_summary",
           "nothing_indexed", "human_bytes", "cmd_demo_library", "cmd_index", "cmd_info", "cmd_cqt"]


def duration_or_none(text: str) -> float | None:
    """An argument type: seconds, at least the shortest sound analysed
    (``audio.MIN_DURATION``), or ``none`` (also ``0``, ``inf``, ``all``): None."""
    if text.lower() in {"none", "0", "inf", "all"}:
        return None
    from soundatlas.audio import MIN_DURATION

    seconds = positive_float(text)
    if seconds < MIN_DURATION:
        raise argparse.ArgumentTypeError(
            f"{text} s is shorter than the shortest sound analysed ({MIN_DURATION:g} s): "
            "give more, or 'none' for no limit")
    return seconds


def human_bytes(n: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 KB``, ... ``2.0 TB``.

    Parameters
    ----------
    n : float
        Bytes.

    Returns
    -------
    str
        The count in the largest unit under 1024 of it (B, KB, MB, GB, TB).
    """
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- demo-library --------------------------------------------------------------------------------


def _add_demo_library(sub, parents) -> None:
    d = sub.add_parser("demo-library", parents=parents, help="render a labelled sound library",
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
    d.add_argument("--pitch-step", type=positive_int, default=5, metavar="N",
                   help="gm: every Nth semitone of each program's range (default: 5, 7,218 "
                   "notes; 1: every semitone, 36,072 notes)")
    d.add_argument("--kits", nargs="+", metavar="KIT",
                   help="drums: only these kits (standard room power electronic tr808 jazz "
                   "brush orchestra sfx; default: every one the SoundFont has)")
    d.add_argument("--drum-keys", nargs="+", type=int, metavar="KEY",
                   help="drums: only these keys (default: GM percussion 35-81; sfx kit 39-84)")
    d.add_argument("--count", type=positive_int, default=2000, metavar="N",
                   help="synth: how many procedural one-shots (default: 2000)")
    d.add_argument("--seed", type=nonnegative_int, default=0, metavar="N",
                   help="synth: seed of the procedural sounds (default: 0)")
    d.add_argument("--format", choices=("wav", "flac"), default="wav",
                   help="file format, 16-bit (default: wav)")
    d.add_argument("--sample-rate", type=int, default=44100, metavar="HZ",
                   help="sample rate of the written files (default: 44100)")
    add_options(d, JOBS)
    d.add_argument("-v", "--verbose", action="store_true",
                   help="list every note not written (silent notes are always in OUT/silent.csv)")
    d.set_defaults(func=cmd_demo_library)


def cmd_demo_library(args: argparse.Namespace) -> int:
    """``soundatlas demo-library``: render a labelled library and say what was written."""
    from soundatlas import demo
    from soundatlas.errors import ParameterError

    if args.set == "demo":  # the classes and velocities, checked before anything is written
        try:
            demo.plan_notes(classes=args.classes, velocities=args.velocities)
        except ParameterError as exc:
            raise UsageError(str(exc)) from None
    with progress_bar(args, desc="rendering", unit="note") as progress:
        summary = demo.render_library(
            args.out, sound_set=args.set, soundfont=args.soundfont, classes=args.classes,
            velocities=tuple(args.velocities), pitch_step=args.pitch_step, kits=args.kits,
            drum_keys=args.drum_keys, synth_count=args.count, synth_seed=args.seed,
            audio_format=args.format, sample_rate=args.sample_rate, n_jobs=args.jobs,
            progress=progress)
    if args.json:
        print_json(as_dict(summary))
        return EXIT_OK
    out = summary.out
    print(f"rendered {summary.n_files_written} notes ({human_bytes(summary.n_bytes)}) into {out} "
          f"in {summary.seconds:.1f} s ({out}/metadata.csv)")
    if len(summary.parts) > 1 or any(part.folder for part in summary.parts):
        for part in summary.parts:
            print(f"  {part.folder or '.'}: {part.n_files_written} of {part.n_notes} notes "
                  f"({human_bytes(part.n_bytes)})")
    for message in summary.messages:
        print(f"  {message}")
    silent = summary.silent
    lines = summary.silent_lines()
    for k, line in enumerate(lines):
        where = f" (listed in {out}/silent.csv and by --verbose)" if k == len(lines) - 1 else ""
        print(f"  {line}{where}")
    if args.verbose:
        for skipped in silent:
            print(f"    {shown(skipped.note.path)}")
    other = [s for s in summary.skipped if not s.silent]
    if other:
        print(f"  {len(other)} notes not written:")
    for skipped in other if args.verbose else other[:20]:
        print(f"    {shown(skipped.note.path)}: {skipped.reason}")
    if summary.clipped:
        print(f"  {len(summary.clipped)} notes clipped at full scale (peak {summary.peak:.2f}), "
              f"e.g. {summary.clipped[0].path}")
    return EXIT_OK


# -- index ---------------------------------------------------------------------------------------

#: The options of ``index``, which ``map`` takes too.
INDEX_OPTIONS = (
    option("library", metavar="LIBRARY", help="folder of samples"),
    option("--atlas", metavar="DIR", help="atlas directory (default: LIBRARY/.soundatlas)"),
    option("--labels", metavar="CSV",
           help="CSV manifest with a 'path' column (absolute, or relative to the CSV's own "
           "folder); other columns become labels (default: LIBRARY/metadata.csv when it "
           "exists)"),
    option("--name-pattern", metavar="REGEX",
           help="labels from file names: a regex with named groups, or 'note' (note "
           "names such as C#4/Db4 into pitch) or 'midi' (a MIDI number into pitch)"),
    option("--no-folder-labels", action="store_true",
           help="do not record each file's parent folder as label 'folder'"),
    option("--max-duration", type=duration_or_none, default=AS_STORED, metavar="SECONDS",
           help="analyse only the first SECONDS of longer files ('none' or 0: no limit); the atlas "
           "keeps it for later runs, and a new limit analyses again the files it reads "
           "otherwise (default: the atlas's, 30 for a new one)"),
    option("--retry-failed", action="store_true",
           help="read again the files that could not be decoded before and have not changed "
           "since (by default they are left as they are until they change)"),
    option("--library-moved", action="store_true",
           help="LIBRARY is the atlas's library moved here, though it holds fewer than half of "
           "the atlas's files (by default such a folder is refused, since its run would take "
           "the missing files' samples out)"),
    JOBS,
    option("--batch-size", type=positive_int, default=32, metavar="N",
           help="files per batch and per commit (default: 32)"),
    option("--cqt-kernel", choices=["folded", "multirate"], metavar="KERNEL",
           help="how a new atlas computes the CQT: multirate (librosa's algorithm, "
           "batched) or folded (one FFT per clip); default: the kernel of the model "
           "that will embed it (map --model, else the shipped default); an existing "
           "atlas keeps its own, and another kernel is refused"),
    option("--refresh-features", action="store_true",
           help="analyse every file again with the current CQT kernel (multirate) when "
           "the atlas's features were made with another (an out-of-date atlas names "
           "this)"),
    SCHEDULER,
)


def run_index(args: argparse.Namespace):
    """Index ``args.library`` as :data:`INDEX_OPTIONS` ask, behind a progress bar.

    Parameters
    ----------
    args : argparse.Namespace
        The command line of ``index`` or ``map`` (``map``'s ``--model`` chooses the CQT of a
        new atlas).

    Returns
    -------
    soundatlas.indexing.IndexSummary
        What ``soundatlas.indexing.index_library`` returns.

    Raises
    ------
    UsageError
        When ``--scheduler`` is given and Dask distributed is not installed or no scheduler
        answers there.
    """
    from dataclasses import replace

    from soundatlas.cqt_params import PAPER_CQT
    from soundatlas.indexing import cqt_for_model, index_library

    # a new atlas gets the CQT its model needs (map: --model; index: the shipped default)
    params = cqt_for_model(args.library, args.atlas, getattr(args, "model", None))
    if args.cqt_kernel:
        params = replace(params or PAPER_CQT, kernel=args.cqt_kernel)
    with progress_bar(args, desc="indexing", unit="file") as progress:
        return index_library(
            args.library, atlas_dir=args.atlas, label_sources=_label_sources(args),
            params=params, refresh_features=args.refresh_features,
            max_duration=args.max_duration, retry_failed=args.retry_failed,
            library_moved=args.library_moved, n_jobs=args.jobs,
            batch_size=args.batch_size,
            executor=executor_for(args), progress=progress,
        )


def _label_sources(args) -> dict:
    """The label settings given on the command line, and only those: the others stay as the
    atlas stores them (``--name-pattern`` alone keeps the manifest)."""
    given = {}
    if args.labels:
        given["manifest"] = args.labels
    if args.name_pattern:
        given["name_pattern"] = args.name_pattern
    if args.no_folder_labels:
        given["folder"] = False
    return given


def executor_for(args):
    """The Dask cluster's executor ``--scheduler`` names (None: this machine); ``map``'s index
    and embed steps share one client.

    Raises
    ------
    UsageError
        When Dask distributed is not installed, or no scheduler answers at ``--scheduler``
        (an address Dask cannot read, or nothing listening there).
    """
    if not getattr(args, "scheduler", None):
        return None
    return _dask_client(args.scheduler).get_executor()


@functools.lru_cache(maxsize=None)
def _dask_client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask distributed: pip install 'distributed'") from None
    import dask.config
    import dask.utils

    try:
        # waits as long as Dask's distributed.comm.timeouts.connect says (30 s by default)
        client = Client(address)
    except (OSError, ValueError) as exc:  # no scheduler answers; an address Dask cannot read
        raise UsageError(f"--scheduler {address}: {exc}") from None
    wait = dask.config.get("distributed.comm.timeouts.connect")
    try:  # a scheduler without workers would take the batches and never answer
        client.wait_for_workers(1, timeout=dask.utils.parse_timedelta(wait))
    except (TimeoutError, OSError) as exc:
        client.close()
        raise UsageError(f"--scheduler {address}: no worker joined the scheduler within {wait} "
                         f"({type(exc).__name__}); start `dask worker {address}` where the "
                         "library's files can be read") from None
    return client


def print_index_summary(s) -> None:
    """Print what an indexing run did (the text of ``soundatlas index``).

    Parameters
    ----------
    s : soundatlas.indexing.IndexSummary
        What :func:`run_index` returned.
    """
    rate = (s.n_indexed / s.seconds) if s.seconds > 0 else 0.0
    rate_text = f"{rate:.0f}" if round(rate, 1) >= 10 or rate == 0 else f"{rate:.1f}"
    print(f"atlas {s.atlas}: {counted(s.n_samples, 'sample')}, {counted(s.n_frames, 'frame')}")
    if s.library_moved_from:
        print(f"  the library moved: the atlas indexed {s.library_moved_from}, now {s.library}")
    print(f"  indexed {s.n_indexed} · unchanged {s.n_unchanged} · moved {s.n_moved} · "
          f"removed {s.n_removed} · failed {s.n_failed}   ({s.seconds:.1f} s, {rate_text} files/s)")
    if s.n_rehashed:
        one = s.n_rehashed == 1
        print(f"  {counted(s.n_rehashed, 'long file')} hashed whole (an older soundatlas "
              + ("hashed its size, head and tail); its" if one else
                 "hashed their size, head and tail); their")
              + " tags, stars and collections kept")
    if s.n_touched:
        print(f"  {counted(s.n_touched, 'file')} with a new date but the same content kept as "
              + ("it was" if s.n_touched == 1 else "they were") + " (not analysed again)")
    if s.n_kept_unreadable:
        one = s.n_kept_unreadable == 1
        print(f"  {counted(s.n_kept_unreadable, 'sample')} kept as "
              + ("it was: its" if one else "they were: their")
              + " file or folder could not be read this time (listed below)")
    if s.n_truncated:
        part = ("only a first part analysed, under an earlier --max-duration"
                if s.max_duration is None  # (a run that could not read them again whole)
                else f"only the first {s.max_duration:g} s analysed (--max-duration)")
        print(f"  {counted(s.n_truncated, 'long file')}: {part}, e.g. {shown(s.truncated[0])}")
    if s.label_counts:
        print("  labels: " + ", ".join(f"{k} ({n})" for k, n in sorted(s.label_counts.items())))
    for line in s.repairs:
        print(f"  repaired: {line}")
    for problem in s.label_problems[:10]:
        print(f"  label problem: {problem}")
    if s.n_failed_unchanged:
        one = s.n_failed_unchanged == 1
        print(f"  {counted(s.n_failed_unchanged, 'file')} that could not be decoded before and "
              + ("has not changed since was" if one else "have not changed since were")
              + f" not read again (--retry-failed reads {'it' if one else 'them'})")
    if s.failures:
        print(f"  {counted(s.n_failed, 'file')} could not be indexed:")
        for path, reason in s.failures[:50]:
            print(f"    {shown(path)}: {shown(reason)}")
        if s.n_failed > 50:
            print(f"    ... and {s.n_failed - 50} more (soundatlas info --json lists all)")


def nothing_indexed(s) -> str | None:
    """Why an indexing run failed as a whole, or None when it did not.

    A few unreadable files among others are ordinary: they are listed and the run succeeds.
    It fails when files failed that had not failed before as they are now, and no file could be
    indexed (files this machine cannot decode, Dask workers that cannot read the library, the
    one new file a script added), or when the atlas ends with no sample and only failures: a
    script must not read success there. A failure tried again on every run (a broken link, a
    file without permission) fails only the run that first meets it; a folder or file that
    cannot be read this time but whose samples are kept (a drive not mounted) fails none.

    Parameters
    ----------
    s : soundatlas.indexing.IndexSummary
        What :func:`run_index` returned.

    Returns
    -------
    str or None
        The error message, naming the first failure.
    """
    if not s.failures:
        return None
    if s.n_failed_new and not s.n_indexed:  # (a failure tried again each run is not new)
        n, (path, reason) = s.n_failed_new, s.failed_new[0]
        return (f"nothing new could be indexed: {n} new failure{'s' * (n != 1)} (the first, "
                f"{shown(path)}: {shown(reason)})")
    path, reason = s.failures[0]
    first = f"{shown(path)}: {shown(reason)}"
    if not s.n_samples:
        return (f"the atlas holds no sample: its {s.n_failed} files all failed (the first, "
                f"{first}); --retry-failed reads them again")
    return None


def _add_index(sub, parents) -> None:
    i = sub.add_parser("index", parents=parents, help="scan a library and index it into an atlas",
                       description="Scan LIBRARY recursively, decode every audio file, compute its "
                       "constant-Q features and store them in the atlas. Incremental: only new "
                       "or changed files are analysed, moved files are recognised by content, "
                       "deleted ones forgotten. Safe to interrupt and re-run. Exits 1 when new "
                       "failures leave nothing indexed, or the atlas holds failures and no "
                       "sample.")
    add_options(i, *INDEX_OPTIONS)
    i.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """``soundatlas index``: scan a library into its atlas and say what changed."""
    summary = run_index(args)
    if args.json:
        print_json(summary.to_dict())
    else:
        print_index_summary(summary)
    failed = nothing_indexed(summary)
    if failed:
        raise SoundAtlasError(failed)
    return EXIT_OK


# -- info, cqt -----------------------------------------------------------------------------------


def _add_info(sub, parents) -> None:
    n = sub.add_parser("info", parents=parents, help="what an atlas holds",
                       description="Counts, labels with their values, failures with reasons and "
                       "disk size of an atlas.")
    add_options(n, ATLAS)
    n.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    """``soundatlas info``: counts, labels, failures and size of an atlas."""
    from soundatlas.atlas import Atlas
    from soundatlas.atlas.core import writer_alive
    from soundatlas.evaluate import sorted_labels

    path = atlas_dir(args)
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
            "max_duration": atlas.max_duration(),
        }
    run = info["last_index"]
    if run and run["status"] == "running" and not writer_alive(path):
        run["status"] = "interrupted"  # killed: the next index marks it so, and goes on
    if args.json:
        print_json(info)
        return EXIT_OK
    print(f"atlas    {info['atlas']}")
    print(f"library  {info['library']}")
    print(f"samples  {info['n_samples']}  ({counted(info['n_frames'], 'frame')}, "
          f"{span(info['n_frames'] / 20)} analysed)")
    print(f"disk     {human_bytes(info['disk_bytes'])}")
    limit = info["max_duration"]
    print("analysed " + ("each file whole" if limit is None else
                         f"the first {limit:g} s of each file") + " (index --max-duration)")
    run = info["last_index"]
    if run:
        print(f"last index run: {run['status']} ({run['n_done']}/{run['n_total']} files)")
    for key, values in info["labels"].items():  # in sorted_labels order
        listed = ", ".join(f"{shown(v)} ({n})" for v, n in list(values.items())[:12])
        more = f", ... {len(values) - 12} more" if len(values) > 12 else ""
        print(f"label {shown(key)}: {len(values)} values: {listed}{more}")
    if info["failures"]:
        print(f"failures ({len(info['failures'])}):")
        for f in info["failures"]:
            print(f"  {shown(f['path'])}: {shown(f['reason'])}")
    return EXIT_OK


def _add_check(sub, parents) -> None:
    c = sub.add_parser("check", parents=parents, help="verify an atlas (and repair it)",
                       description="Verify an atlas: SQLite integrity, every feature and "
                       "embedding file present with the shape and checksum its rows say, no "
                       "file that no row names, models that load, the CQT parameters. One line "
                       "per problem; exit 1 when there is one. --repair removes the files no "
                       "row names, marks samples with damaged features for the next index, "
                       "drops embeddings in damaged files for the next embed and rebuilds "
                       "database indexes out of step with their tables; labels, tags and "
                       "models are never removed. Run --repair when no index or embed runs.")
    add_options(c, ATLAS)
    c.add_argument("--repair", action="store_true", help="fix what can be fixed")
    c.add_argument("--no-models", action="store_true",
                   help="do not load the models (quicker)")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """``soundatlas check``: one line per problem; exit 1 when any is left."""
    from soundatlas.check import check_atlas

    with progress_bar(args, desc="checking", unit="file") as progress:
        report = check_atlas(atlas_dir(args), repair=args.repair, models=not args.no_models,
                             progress=progress)
    if args.json:
        print_json({"atlas": report.atlas, "ok": report.ok, "checked": report.checked,
                    "problems": [p.__dict__ for p in report.problems]})
    else:
        for p in report.problems:
            print(p.line())
        c = report.checked
        print(f"{'ok' if report.ok else 'problems'}: {c.get('feature_files', 0)} feature "
              f"files, {c.get('embedding_files', 0)} embedding files, "
              f"{c.get('models', 0)} models checked; {len(report.problems)} problem"
              f"{'s' * (len(report.problems) != 1)}")
    return EXIT_OK if report.ok else EXIT_FAIL


def _add_cqt(sub, parents) -> None:
    c = sub.add_parser("cqt", parents=parents, help="write the constant-Q features of one file",
                       description="Decode FILE to 16 kHz mono and write its paper CQT, "
                       "log(50|C|+1), as a (frames x 192) float32 .npy array.")
    c.add_argument("file", metavar="FILE", help="audio file")
    c.add_argument("--output", "-o", required=True, metavar="F.npy", help="where to write")
    c.add_argument("--max-duration", type=duration_or_none, default=None, metavar="SECONDS",
                   help="analyse only the first SECONDS (default: the whole file)")
    c.set_defaults(func=cmd_cqt)


def cmd_cqt(args: argparse.Namespace) -> int:
    """``soundatlas cqt``: write one file's constant-Q features as a .npy array."""
    import numpy as np

    from soundatlas import audio
    from soundatlas.cqt import PAPER_CQT, cqt

    out = check_output(args.output, ".npy")  # before the work, which a bad path would lose
    a = audio.load(args.file, sr=PAPER_CQT.sr, max_duration=args.max_duration)
    C = cqt(a.y)
    # through an open file: np.save given a name adds .npy to one that lacks it (x.NPY), and
    # the file written must be the one reported
    with writing(out), open(out, "wb") as f:
        np.save(f, C)
    result = {"file": str(args.file), "output": str(out), "shape": list(C.shape),
              "duration": a.duration, "truncated": a.truncated}
    if args.json:
        print_json(result)
    else:
        note = f" (first {a.duration:g} s of {a.file_duration:g} s)" if a.truncated else ""
        print(f"{out}: {C.shape[0]} frames x {C.shape[1]} bins, log(50|C|+1), float32{note}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``demo-library``, ``index``, ``info``, ``check`` and ``cqt`` (see
    :mod:`soundatlas.cli`)."""
    for add in (_add_demo_library, _add_index, _add_info, _add_check, _add_cqt):
        add(sub, parents)
