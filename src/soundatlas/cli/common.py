"""What every command module of the command line shares.

- Exit statuses and :class:`UsageError`, and :func:`run_command`, which turns the errors a
  command raises into one line on stderr and its exit status.
- Argument types (:func:`positive_int`, :func:`positive_float`, :func:`nonnegative_int`,
  :func:`nonnegative_float`, :func:`checked`): each reads an option's text and raises ``argparse.ArgumentTypeError`` for
  a bad value, which argparse prints as a usage error naming the option (exit 2).
- :class:`Option`: an option declared once for every command that takes it, with hidden
  aliases for other spellings; :data:`ATLAS`, :data:`SEED`, :data:`THREADS` and :data:`JOBS`
  are the options several command groups share, :func:`output_parent` the ``--json`` and
  ``--quiet`` of every command that prints results.
- Output and atlas helpers: :func:`check_output` and :func:`writing` (a file a command writes:
  refused before the work when it cannot be written, a failed write one line naming it),
  :func:`progress_bar`, :func:`print_json`, :func:`as_dict`, :func:`atlas_dir`,
  :func:`open_atlas`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import numbers
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundatlas.errors import ParameterError, SoundAtlasError, is_disk_full
from soundatlas.settings import PRECISIONS
from soundatlas.text import shown  # noqa: F401  (the commands' name for it)

__all__ = ["EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "UsageError", "run_command",
           "number", "positive_float", "nonnegative_float", "fraction", "positive_int",
           "int_range", "nonnegative_int", "checked", "Option", "option", "add_options",
           "output_parent", "ATLAS", "SEED", "THREADS", "JOBS",
           "check_output", "writing", "progress_bar", "print_json", "as_dict", "atlas_dir",
           "open_atlas", "shown"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(SoundAtlasError):
    """The command line itself is wrong (exit status 2)."""


def run_command(args: argparse.Namespace) -> int:
    """Run the command ``args`` names (``args.func``) and return its exit status.

    A :class:`UsageError` prints ``error:`` and one line and returns 2; any other
    :class:`~soundatlas.errors.SoundAtlasError` prints ``error:`` and one line and returns 1;
    Ctrl-C says how to go on (where there is a way) and returns 130; a closed pipe (``| head``) returns 0; a full
    disk, or a damaged database file, prints what to do and returns 1.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; ``args.command`` is the command's name, ``args.func`` its
        ``cmd_*`` function.

    Returns
    -------
    int
        The process's exit status.
    """
    try:
        with _command_threads(args):
            return args.func(args)
    except UsageError as exc:  # worded as argparse words its own (``error:``), exit 2 too
        print(f"soundatlas {args.command}: error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SoundAtlasError as exc:
        print(f"soundatlas {args.command}: error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"soundatlas {args.command}: interrupted{_after_interrupt(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"soundatlas {args.command}: error: no space left on the device{where}: free "
              "some space, then run the command again", file=sys.stderr)
        return EXIT_FAIL
    except sqlite3.DatabaseError as exc:
        # a damaged file only: a constraint or a misuse (IntegrityError, ProgrammingError) is a
        # bug of soundatlas, and its traceback the way to find it
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code
        if code not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise
        print(f"soundatlas {args.command}: error: " + shown(
            f"the atlas's database is damaged ({exc}): `soundatlas check{_atlas_option(args)}` "
            "says where; an atlas it cannot repair is made again by indexing the library into "
            "a new one"), file=sys.stderr)
        return EXIT_FAIL


def _atlas_option(args: argparse.Namespace) -> str:
    """`` --atlas DIR`` for the atlas the command used, where the command line names one."""
    if getattr(args, "atlas", None):
        return f" --atlas {shlex.quote(str(args.atlas))}"
    if getattr(args, "library", None):  # index, map: LIBRARY/.soundatlas
        return f" --atlas {shlex.quote(os.path.join(str(args.library), '.soundatlas'))}"
    return ""


def _command_threads(args: argparse.Namespace):
    """``--threads N`` holds for the whole command (an adaptation's embedding too), and for no
    more: ``main`` run inside another program leaves its thread count as it was."""
    if not getattr(args, "threads", None):
        return contextlib.nullcontext()
    from soundatlas.train import torch_threads  # torch only for the commands that run it

    return torch_threads(args.threads)


#: commands that, run again, go on from what an interrupted run left (files analysed, samples
#: embedded are kept and skipped)
_RERUN_GOES_ON = frozenset({"index", "embed", "map"})


def _after_interrupt(args: argparse.Namespace) -> str:
    """What the interrupted message adds: how to go on, where there is a way."""
    if hasattr(args, "resume"):  # train, adapt: a checkpoint, used only when asked for
        return ("; its last checkpoint is kept: run the same command with --resume to go on "
                "from it (without --resume it starts again from the beginning)")
    if getattr(args, "again", False):  # embed --again: run again, it would start over
        return ("; run it again without --again to go on: what it finished is kept (with "
                "--again it starts over)")
    if args.command in _RERUN_GOES_ON:
        return "; run it again to go on: what it finished is kept"
    return ""


# -- argument types ----------------------------------------------------------------------------


def number(text: str, kind: type = float, what: str = "a number"):
    """``kind(text)``, for argument types; other text is a usage error: ``'x' is not WHAT``."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_float(text: str) -> float:
    """An argument type: a number above 0."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def float_range(low: float, high: float) -> Callable[[str], float]:
    """An argument type: a finite number from ``low`` to ``high`` (what the library accepts,
    so that a value out of range is misuse named by its option, not a failure later)."""

    def parse(text: str) -> float:
        value = number(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} must be from {low:g} to {high:g}")
        return value

    return parse


def nonnegative_float(text: str) -> float:
    """An argument type: a finite number of at least 0 (a weight)."""
    value = number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def fraction(text: str) -> float:
    """An argument type: a number from 0 to 1 (a share, a confidence)."""
    value = number(text)
    if not 0 <= value <= 1:  # (NaN too)
        raise argparse.ArgumentTypeError(f"{text} must lie in 0..1")
    return value


def positive_int(text: str) -> int:
    """An argument type: a whole number of at least 1 (a count)."""
    value = number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from ``low`` to ``high`` (a bound past which a value
    ends in an allocation's or a C library's failure, not in a message)."""

    def parse(text: str) -> int:
        value = number(text, int, "an integer")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be from {low} to {high}")
        return value

    return parse


def nonnegative_int(text: str) -> int:
    """An argument type: a whole number of at least 0."""
    value = number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argument type made of a function that raises the package's ParameterError.

    Use it as a decorator on a function that reads an option's text with the package's own
    parser (``parse_neighbourhood``, say); that parser's message becomes the usage error.

    Parameters
    ----------
    parse : callable
        Reads an option's text; raises :class:`~soundatlas.errors.ParameterError` when it is
        wrong.

    Returns
    -------
    callable
        The argument type: what ``parse`` returns; a ParameterError becomes an
        ``argparse.ArgumentTypeError``, which argparse prints as a usage error naming the option.
    """

    @functools.wraps(parse)
    def argument(text: str):
        try:
            return parse(text)
        except ParameterError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None

    return argument


# -- options shared between commands -------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """An option (or positional argument) declared once for every command that takes it.

    Parameters
    ----------
    flags : tuple of str
        What ``ArgumentParser.add_argument`` takes first: ``("--model", "-m")``, or a
        positional argument's name.
    kwargs : mapping
        The rest of ``add_argument``'s arguments (``help``, ``type``, ``default``, ...).
    aliases : tuple of str
        Other spellings accepted for the same option; ``--help`` shows only ``flags``.

    See Also
    --------
    option : builds one as ``add_argument`` is called.
    """

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        """Add the option (and its hidden aliases) to ``parser``.

        Parameters
        ----------
        parser : argparse.ArgumentParser
            A command's parser.

        Returns
        -------
        argparse.Action
            The option's action (the aliases store into its ``dest``).
        """
        action = parser.add_argument(*self.flags, **self.kwargs)
        for alias in self.aliases:
            parser.add_argument(alias, **{**self.kwargs, "dest": action.dest,
                                          "help": argparse.SUPPRESS,
                                          "default": argparse.SUPPRESS})
        return action


def option(*flags: str, aliases: tuple[str, ...] = (), **kwargs) -> Option:
    """An :class:`Option`, written as ``ArgumentParser.add_argument`` is called.

    Parameters
    ----------
    *flags : str
        The option strings (``"--model", "-m"``) or a positional argument's name.
    aliases : tuple of str, optional
        Other spellings accepted and left out of ``--help``.
    **kwargs
        ``add_argument``'s keyword arguments.

    Returns
    -------
    Option
        The declaration; add it to a parser with :func:`add_options`.
    """
    return Option(tuple(flags), dict(kwargs), tuple(aliases))


def add_options(parser: argparse.ArgumentParser, *options: Option) -> None:
    """Add ``options`` to ``parser`` in the order given (the order ``--help`` lists them).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command's parser.
    *options : Option
        The options.
    """
    for opt in options:
        opt.add_to(parser)


def output_parent() -> argparse.ArgumentParser:
    """The parent parser of every command that prints results: ``--json`` and ``--quiet``.

    Returns
    -------
    argparse.ArgumentParser
        A parser without ``--help``, for ``add_parser(..., parents=[...])``.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON results")
    parent.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parent


#: ``--atlas`` of every command that opens an existing atlas.
ATLAS = option("--atlas", metavar="DIR",
               help="atlas directory (default: $SOUNDATLAS_ATLAS or ./.soundatlas)")
#: ``--seed`` of the commands whose randomness starts from one seed (default 0).
SEED = option("--seed", type=int_range(0, 2**63 - 1), default=0, metavar="N",
              help="random seed (default: 0)")
#: ``--threads`` of the commands that run torch.
THREADS = option("--threads", type=int_range(1, 1024), metavar="N",
                 help="torch threads (default: all cores)")
#: ``--precision`` and ``--device`` of the commands that embed (``embed``, ``map``).
EMBED_PRECISION = option("--precision", choices=PRECISIONS, default="auto",
                         help="the network's arithmetic: auto (bf16 where the CPU or GPU computes "
                         "it natively, three to five times as fast, points within 1%% of the "
                         "map's extent of fp32; else fp32), fp32 (exact) or bf16 (default: auto)")
EMBED_DEVICE = option("--device", choices=["cpu", "cuda"], default="cpu",
                      help="where the network runs (default: cpu)")
#: ``--scheduler`` of the commands that run batches on a Dask cluster (``index``, ``embed``,
#: ``map``).
SCHEDULER = option("--scheduler", metavar="ADDRESS",
                   help="run the batches on a Dask distributed cluster (e.g. tcp://host:8786): "
                   "index's workers must see the library at the same path; embed's get the "
                   "features and the model from this process")
#: ``--jobs`` of the commands that run worker processes.
JOBS = option("--jobs", type=positive_int, metavar="N", help="processes (default: one per core)")


# -- output and atlas helpers ----------------------------------------------------------------------


def check_output(path: str | os.PathLike, suffix: str | None = None, *,
                 flag: str | None = "--output") -> Path:
    """A file a command will write, checked before the work, so that a wrong path does not
    lose it: a new or existing file (not a folder), ending in ``suffix``, in a folder that
    exists.

    Parameters
    ----------
    path : str or os.PathLike
        The file, as the command line gives it.
    suffix : str, optional
        The extension it must end in (``".wav"``; any case); None: any.
    flag : str or None, optional
        The option that gave it, to name in the message (default ``--output``); None for a
        positional argument (the message starts with the path).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    UsageError
        Naming the option and the path, when the path cannot be the file asked for.
    """
    if not str(path).strip():  # Path("") is ".", which would be named instead
        raise UsageError(f"{flag or 'the output'} is empty: give the file to write")
    out = Path(path)
    named = f"{flag} {out}" if flag else str(out)
    if suffix is not None and out.suffix.lower() != suffix:
        raise UsageError(f"{named} must end in {suffix}")
    try:
        if out.is_dir():
            raise UsageError(f"{named} is a directory")
        if not out.parent.is_dir():
            what = "is not a folder" if out.parent.exists() else "does not exist"
            raise UsageError(f"{named}: the folder {out.parent} {what}")
    except OSError as exc:  # a name longer than the file system allows, a loop of links
        raise UsageError(f"{named}: {exc.strerror or exc}") from None
    return out


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """A block that writes ``path``: an OSError in it becomes one line naming the file.

    A full disk is left to :func:`run_command`, which says what to do about it. The message
    names the file the OSError names when that is another (a library file a zip reads, say).

    Parameters
    ----------
    path : str or os.PathLike
        The file the block writes.

    Raises
    ------
    SoundAtlasError
        ``cannot write PATH: REASON``, when writing fails for another reason than a full disk
        (a folder removed since :func:`check_output`, no permission, ...).
    """
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise
        name = exc.filename  # may be None, or a descriptor
        named = isinstance(name, (str, bytes, os.PathLike))
        where = f"{os.fsdecode(name)}: " if named and os.fsdecode(name) != os.fsdecode(path) else ""
        raise SoundAtlasError(f"cannot write {path}: {where}{exc.strerror or exc}") from exc


@contextmanager
def progress_bar(args: argparse.Namespace, *, desc: str, unit: str) -> Iterator[Callable]:
    """A tqdm bar on stderr, as a progress callback.

    Parameters
    ----------
    args : argparse.Namespace
        The command line; ``args.quiet`` hides the bar (as does a stderr that is not a
        terminal).
    desc, unit : str
        The bar's label and the unit it counts.

    Yields
    ------
    callable
        ``update(n_done, n_total, **postfix)``: moves the bar to ``n_done`` of ``n_total``
        and shows ``postfix`` beside it.
    """
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


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (what ``--json`` prints).

    Parameters
    ----------
    obj : object
        Anything ``json`` writes; other values (paths, say) are written as ``str(value)``, and
        a float that is not finite as ``null`` (Python's ``NaN`` is not JSON: other readers
        refuse the whole document).
    """
    json.dump(_finite(obj), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def _finite(obj: Any) -> Any:
    """``obj`` with each float that is not finite (numpy's too) as None, numpy's integers as
    ``int``."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, numbers.Integral) and not isinstance(obj, int):  # numpy's: a number
        return int(obj)
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def as_dict(obj: Any) -> Any:
    """A dataclass as a dict (for :func:`print_json`); anything else as it is.

    Parameters
    ----------
    obj : object
        A summary a stage returned.

    Returns
    -------
    object
        ``dataclasses.asdict(obj)`` for a dataclass instance, else ``obj``.
    """
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def atlas_dir(args: argparse.Namespace) -> Path:
    """The atlas a command works on.

    Parameters
    ----------
    args : argparse.Namespace
        The command line, with ``args.atlas``.

    Returns
    -------
    pathlib.Path
        ``--atlas``, else ``$SOUNDATLAS_ATLAS``, else ``./.soundatlas``.
    """
    if args.atlas:
        return Path(args.atlas)
    return Path(os.environ.get("SOUNDATLAS_ATLAS", "")) if os.environ.get("SOUNDATLAS_ATLAS") else (
        Path.cwd() / ".soundatlas"
    )


def open_atlas(args: argparse.Namespace, *, write: bool = False, tidy: bool = True):
    """Open the atlas of :func:`atlas_dir`.

    Parameters
    ----------
    args : argparse.Namespace
        The command line, with ``args.atlas``.
    write : bool, optional
        Open it for writing (default: read-only).
    tidy : bool, optional
        As ``Atlas.open``'s: False for a writer that writes no array file (``train``).

    Returns
    -------
    soundatlas.atlas.Atlas
        The open atlas (a context manager).
    """
    from soundatlas.atlas import Atlas

    return Atlas.open(atlas_dir(args), write=write, tidy=tidy)
