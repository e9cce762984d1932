"""The command line: parses, runs the stages, prints. Exit 0 ok, 1 failure, 2 misuse.

One module per command group, in the order of the flow (and of ``soundatlas --help``):

- :mod:`~soundatlas.cli.library`: ``demo-library``, ``index``, ``info``, ``check``, ``cqt``
- :mod:`~soundatlas.cli.learn`: ``train``, ``embed``, ``models``, ``map``, ``adapt``
  (``train``'s setting flags come from ``TrainSettings``: :mod:`~soundatlas.cli.train_flags`)
- :mod:`~soundatlas.cli.evaluate`: ``evaluate``, ``report``
- :mod:`~soundatlas.cli.serve`: ``serve``
- :mod:`~soundatlas.cli.sound`: ``synth``, ``mosaic``, ``trajectory``
- :mod:`~soundatlas.cli.curate`: ``tag``, ``star``, ``note``, ``collections``, ``tags``

:mod:`~soundatlas.cli.common` holds what they share: exit statuses and error handling, argument
types, options declared once for several commands (``--atlas``, ``--seed``, ...), progress bars,
JSON printing, opening the atlas.

Adding a command
----------------
Each command module has ``register(sub, parents)``: ``sub`` is the ``soundatlas`` parser's
subcommands (what ``add_subparsers`` returns), ``parents`` the parent parsers of a command that
prints results (``--json`` and ``--quiet``: :func:`~soundatlas.cli.common.output_parent`).
For each of its commands it calls an ``_add_NAME(sub, parents)``, which adds the command's
parser with ``sub.add_parser("NAME", parents=parents, help=..., description=...)``, its options
(those several commands share are declared once, as :class:`~soundatlas.cli.common.Option`,
and added with :func:`~soundatlas.cli.common.add_options`) and
``set_defaults(func=cmd_NAME)``; ``cmd_NAME(args)`` stands right below it, does the work and
returns the exit status.

To add a command, write its ``_add_NAME`` and ``cmd_NAME`` in the module of its group and add
``_add_NAME`` to that module's ``register``. A new group is a new module in
:data:`COMMAND_MODULES` (from outside the package, e.g. in a test, a module passed to
:func:`main` or :func:`build_parser`). A command raises :class:`UsageError` for a wrong
command line (exit 2) and ``SoundAtlasError`` for a failure (exit 1); :func:`main` prints
either as one line.

An idea has one spelling on every command (``--sample-rate``); an older spelling stays
accepted as a hidden alias of the option (``Option(..., aliases=("--sr",))``). A training
setting is a field of ``TrainSettings``: its ``train`` flag is generated from the field
(:mod:`~soundatlas.cli.train_flags`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from types import ModuleType

from soundatlas import __version__
from soundatlas.cli import curate, evaluate, learn, library, serve, sound
from soundatlas.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    output_parent,
    run_command,
)
from soundatlas.cli.train_flags import train_settings

__all__ = ["main", "build_parser", "COMMAND_MODULES", "train_settings", "UsageError",
           "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE"]

#: The command modules, in the order ``soundatlas --help`` lists their commands.
COMMAND_MODULES: tuple[ModuleType, ...] = (library, learn, evaluate, serve, sound, curate)


def build_parser(modules: Iterable[ModuleType] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The ``soundatlas`` parser, with every command of ``modules``.

    Parameters
    ----------
    modules : iterable of module, optional
        Command modules, each with ``register(subparsers, parents)``; default
        :data:`COMMAND_MODULES`.

    Returns
    -------
    argparse.ArgumentParser
        The parser; a parsed command line's ``func`` is its command's ``cmd_*`` function.
    """
    p = argparse.ArgumentParser(
        prog="soundatlas",
        description="Navigable 3-D maps of large sound-sample libraries.",
        epilog="Run `soundatlas COMMAND --help` for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"soundatlas {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = [output_parent()]
    for module in modules:
        module.register(sub, parents)
    return p


def main(argv: list[str] | None = None, *,
         modules: Iterable[ModuleType] = COMMAND_MODULES) -> int:
    """Run ``soundatlas`` with the command line ``argv``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``soundatlas`` (default: ``sys.argv[1:]``).
    modules : iterable of module, optional
        The command modules (default: :data:`COMMAND_MODULES`), as :func:`build_parser` takes.

    Returns
    -------
    int
        The exit status: 0 ok, 1 failure, 2 misuse (argparse exits itself with 2 on a command
        line it cannot parse, and with 0 after ``--help``), 130 interrupted.
    """
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(modules)
    if not argv:  # what there is to do, not only that a command is missing
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args, extra = parser.parse_known_args(argv)
    if extra:  # said with the usage of the command they were given to, not soundatlas's
        _deepest(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return run_command(args)


def _deepest(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The parser of the (sub)command ``args`` chose: ``collections list``'s, say."""
    while True:
        chosen = [a.choices.get(getattr(args, a.dest, None)) for a in parser._actions
                  if isinstance(a, argparse._SubParsersAction)]
        if not chosen or chosen[0] is None:
            return parser
        parser = chosen[0]
