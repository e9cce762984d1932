"""Commands that score maps: ``evaluate`` (a table, or JSON) and ``report`` (an HTML page).

Both run the same scoring, so they take the same options (:func:`scoring_options`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from soundatlas.cli.common import (
    ATLAS,
    EXIT_OK,
    SEED,
    UsageError,
    add_options,
    atlas_dir,
    check_output,
    nonnegative_int,
    open_atlas,
    option,
    positive_int,
    print_json,
    progress_bar,
    writing,
)
from soundatlas.errors import SoundAtlasError

__all__ = ["register", "scoring_options", "baseline_list", "cmd_evaluate", "cmd_report"]


def scoring_options() -> tuple:
    """The options of ``evaluate`` and ``report``, which run the same scoring.

    Returns
    -------
    tuple of Option
        ``--baselines`` (its help lists the registered baselines), ``--analogies``,
        ``--frames-per-file``, ``--seed`` and ``--labels``.
    """
    from soundatlas.baselines import BASELINES

    return (
        option("--baselines", default="all", metavar="LIST",
               help=f"comma-separated baselines: {', '.join(BASELINES)}; 'all' (default) or "
               "'none'"),
        option("--analogies", type=nonnegative_int, default=500, metavar="N",
               help="random analogy triples per map (default: 500; 0: none)"),
        option("--frames-per-file", type=positive_int, default=8, metavar="N",
               help="energy-weighted frames per file (default: 8)"),
        SEED,
        option("--labels", nargs="+", metavar="KEY",
               help="label keys to score (default: instrument and pitch, those of the "
               "two the atlas has, else folder, else its first label); A+B scores the pair "
               "as one label, e.g. instrument+pitch, what the instrument-pitch "
               "neighbourhood learns"),
    )


def baseline_list(text: str) -> list[str]:
    """The baselines ``--baselines`` names.

    Parameters
    ----------
    text : str
        ``all``, ``none`` (or empty) or a comma-separated list of registered baselines.

    Returns
    -------
    list of str
        Baseline names, in the order given (``all``: the registry's order).

    Raises
    ------
    UsageError
        When a name is not a registered baseline.
    """
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


def _add_evaluate(sub, parents) -> None:
    ev = sub.add_parser("evaluate", parents=parents,
                        help="score models beside baselines (k-NN, retrieval, analogies, ...)",
                        description="The reference protocol (k-NN on frame embeddings of "
                        "training files, k chosen on validation, accuracy on test frames) plus "
                        "confusion matrices, retrieval (P@10, MAP@R), trustworthiness and "
                        "continuity, and acoustic analogies, for each model and baseline on the "
                        "same frames and split. Each accuracy has a 95 % interval over test "
                        "files, and each map after the first model its difference from that "
                        "model on the same frames, with the interval of the difference.")
    add_options(ev, *scoring_options(), ATLAS)
    ev.add_argument("--model", "-m", action="append", metavar="NAME",
                    help="model to score (repeat for several; without it: baselines only)")
    ev.add_argument("--output", "-o", metavar="FILE", help="also write the full JSON result here")
    ev.add_argument("--reference", metavar="ATLAS",
                    help="cross-bank protocol: fit the k-NN and every baseline on this other "
                    "atlas's training frames (k chosen on its validation frames) and score every "
                    "frame of --atlas; each model must be embedded in both with the same weights")
    ev.add_argument("--reference-classes", choices=("held", "all"), default=None,
                    help="with --reference, what the k-NN chooses among: the classes --atlas "
                    "has (held: the reference's frames of other classes are left out, and the "
                    "table says how many), or all the reference's (a sound may be taken for a "
                    "class this library lacks) (default: held)")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``soundatlas evaluate``: score models and baselines; print the table or the JSON."""
    from contextlib import ExitStack

    from soundatlas.atlas import Atlas
    from soundatlas.evaluate import evaluate
    from soundatlas.scoretable import format_scores

    baselines = baseline_list(args.baselines)
    out = check_output(args.output) if args.output else None  # before the work a bad path loses
    if not args.model and not baselines:
        raise UsageError("nothing to evaluate: name a model (-m) or a baseline (--baselines)")
    if args.reference_classes and not args.reference:  # it would change nothing: say so
        raise UsageError("--reference-classes applies to cross-bank scoring: give --reference "
                         "too")
    if args.reference and Path(args.reference).resolve() == atlas_dir(args).resolve():
        # its training files would be scored as test files: every label near 1.000
        raise UsageError(f"--reference {args.reference} is the atlas evaluated; give another "
                         "library's atlas (cross-bank), or leave it out (within-set)")
    with ExitStack() as stack:
        atlas = stack.enter_context(open_atlas(args))
        reference = (stack.enter_context(Atlas.open(Path(args.reference), option="--reference"))
                     if args.reference else None)
        bar = stack.enter_context(progress_bar(args, desc="evaluating", unit="stage"))
        result = evaluate(atlas, args.model or (), baselines=baselines, labels=args.labels,
                          reference=reference, reference_classes=args.reference_classes or "held",
                          n_per_file=args.frames_per_file, n_analogies=args.analogies,
                          seed=args.seed, progress=lambda d, t, stage: bar(d, t, stage=stage))
    if out is not None:
        with writing(out):
            out.write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        print_json(result)
    else:
        print(format_scores(result))
    return EXIT_OK


def _add_report(sub, parents) -> None:
    rp = sub.add_parser("report", parents=parents, help="write an HTML report of models",
                        description="Evaluate models beside baselines and write a self-contained "
                        "HTML page with tables and figures (3-D views, per-class accuracy, "
                        "confusion matrices, trajectories, analogies) into a directory.")
    add_options(rp, *scoring_options(), ATLAS)
    rp.add_argument("--model", "-m", action="append", dest="models", metavar="NAME",
                    help="model to report (repeat for several; default: every fully embedded "
                    "model)")
    # the spelling before `evaluate`'s -m was shared: `--models A B`, kept as a hidden alias
    rp.add_argument("--models", nargs="+", action="extend", dest="models", metavar="NAME",
                    help=argparse.SUPPRESS)
    rp.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for index.html, evaluation.json and fig/")
    rp.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """``soundatlas report``: score models and baselines into an HTML page."""
    baselines = baseline_list(args.baselines)
    made = _report_folder(Path(args.output))  # before the work that a bad path would lose
    try:
        return _report(args, baselines)
    except BaseException:
        if made and not any(made.iterdir()):  # nothing was written into it: not left behind
            made.rmdir()
        raise


def _report_folder(out: Path) -> Path | None:
    """Make the report's folder; the folder made (None: it was there). UsageError naming what
    is in the way (a file, a folder that cannot be written)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} exists and is not a folder")
    if out.is_dir():
        return None
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--output {out}: the folder cannot be made ({exc.strerror or exc})") \
            from None
    return out


def _report(args: argparse.Namespace, baselines) -> int:
    from soundatlas.report import write_report

    with open_atlas(args) as atlas, progress_bar(args, desc="report", unit="stage") as bar:
        models = args.models or [
            m.name for m in atlas.models() if m.n_embedded >= atlas.n_samples() > 0]
        if not models:
            raise SoundAtlasError("no fully embedded model in the atlas; run `soundatlas embed` "
                                  "first or name models with -m")
        page = write_report(atlas, args.output, models=models, baselines=baselines,
                            seed=args.seed, n_per_file=args.frames_per_file,
                            n_analogies=args.analogies, labels=args.labels,
                            progress=lambda d, t, stage: bar(d, t, stage=stage))
    if args.json:
        print_json({"page": str(page), "models": models, "baselines": baselines})
    else:
        print(f"report written: {page}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` and ``report`` (see :mod:`soundatlas.cli`)."""
    for add in (_add_evaluate, _add_report):
        add(sub, parents)
