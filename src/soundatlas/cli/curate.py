"""``soundatlas tag``, ``star``, ``note``, ``collections`` and ``tags``: what the user makes of
the library (``soundatlas.atlas.curation``), kept in the atlas, never in the library's files.

ITEMS name samples: a sample id, a path as the atlas lists it (relative to the library, or
absolute inside it), a folder (every sample under it), or ``-`` (one item per line from the
standard input). Digits are a sample id, or a folder of that name where no sample has that id
(``808/`` is always the folder). These commands write only the user's tables, so they may run while ``index``
or ``embed`` works on the same atlas.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import io
import os
import sys
from pathlib import Path

from soundatlas.cli.common import (
    ATLAS,
    EXIT_OK,
    UsageError,
    add_options,
    atlas_dir,
    check_output,
    fraction,
    nonnegative_int,
    positive_int,
    print_json,
    shown,
    writing,
)
from soundatlas.errors import AtlasError
from soundatlas.text import counted, from_spreadsheet_cell, spreadsheet_cell

__all__ = ["register", "resolve_items", "cmd_tag", "cmd_star", "cmd_note", "cmd_collections",
           "cmd_tags", "cmd_suggest"]

ITEMS_HELP = ("sample ids, paths (relative to the library, absolute, or relative to the "
              "working folder, inside the library; either Unicode form), folders (every "
              "sample under them), or - to read them from the standard input")
TAG_CSV_COLUMNS = ["path", "hash", "tag", "suggested", "confidence"]


def resolve_items(atlas, items: list[str]) -> list[int]:
    """Sample ids of ITEMS (see the module doc), in the order given, each once.

    Raises
    ------
    UsageError
        Naming every item that names no sample.
    """
    from soundatlas.atlas.samples import is_id_text

    if items == ["-"] or "-" in items:
        # one item a line, as it is: a file name may begin or end with a space
        items = [i for i in items if i != "-"] + [line.rstrip("\r\n") for line in sys.stdin
                                                   if line.strip()]
    if not items:
        raise UsageError("no items: give sample ids, paths or folders (or - for stdin)")
    root = atlas.library.resolve()
    out: dict[int, None] = {}
    unknown = []
    for item in items:
        # as written, then without surrounding spaces (ids padded by `collections show`'s
        # column, a path pasted with a trailing blank)
        found, outside = _ids_of(atlas, item, is_id_text)
        if not found and item.strip() not in (item, ""):
            found, outside = _ids_of(atlas, item.strip(), is_id_text)
        if outside:
            unknown.append(f"{item} (outside the library {root})")
        elif not found:
            unknown.append(item)
        out.update(dict.fromkeys(found))
    if unknown:
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise UsageError("no samples at: " + ", ".join(unknown[:10]) + more)
    return list(out)


def _ids_of(atlas, item: str, is_id_text) -> tuple[list[int], bool]:
    """The samples one ITEM names, and whether it lies outside the library."""
    if is_id_text(item):
        # a sample id, or a folder named with digits (files have a suffix): the id where
        # there is one, the folder where there is not, and refused where both are
        by_id = [int(item)] if atlas.samples([int(item)]) else []
        folder = atlas.ids_under(item)
        if by_id and folder and folder != by_id:
            raise UsageError(f"{item} is both sample {item} ({atlas.samples(by_id)[0].path})"
                             f" and the folder {item}/: give {item}/ for the folder, or the "
                             "sample's path")
        return by_id or folder, False
    rels = _relative_forms(item, atlas.library)
    if not rels:
        return [], True
    return next((ids for rel in rels if (ids := atlas.ids_under(rel))), []), False


def _relative_forms(item: str, library: Path) -> list[str]:
    """The library-relative paths an item (not an id) may name, in the order tried: as written
    (``./`` and doubled slashes dropped), then in the other Unicode normal forms (a name typed
    or listed on one system, NFC, and stored as another wrote it, NFD on macOS). An absolute
    path is taken as written first (a link inside the library is the sample's own path), then
    with its links resolved; so is a relative one that exists from the working folder: alone
    when the working folder is one of the library's folders, else after it is tried as
    relative to the library. Empty when it lies outside the library."""
    import posixpath

    from soundatlas.text import unicode_forms

    def inside(path: str) -> list[str]:
        rels = []
        for path, root in ((os.path.abspath(path), os.path.abspath(library)),
                           (os.path.realpath(path), os.path.realpath(library))):
            rel = os.path.relpath(path, root)
            if rel != ".." and not rel.startswith("../"):
                rels.append(Path(rel).as_posix())
        return rels

    if os.path.isabs(item):
        rels = inside(item)
        if not rels:
            return []
    else:
        rels = [posixpath.normpath(item.replace(os.sep, "/"))]
        if os.path.lexists(item):  # from the working folder, as a shell completes it: alone
            # where the working folder is a folder of the library (`tag .` there is that
            # folder, never the library), after the library-relative reading elsewhere
            here = inside(os.getcwd())
            rels = (inside(item) if here and here[0] != "." else rels + inside(item))
    rels = [r.strip("/") for r in rels]
    return list(dict.fromkeys(rels + [form for r in rels for form in unicode_forms(r)]))


def _curating(args: argparse.Namespace):
    """The atlas open for the user's tables (no tidying of array files: see
    ``Atlas.open(tidy=...)``)."""
    from soundatlas.atlas import Atlas

    return Atlas.open(atlas_dir(args), write=True, tidy=False)


def _report(args, payload: dict, line: str) -> int:
    if args.json:
        print_json(payload)
    else:  # -q hides progress bars, never the result
        print(line)
    return EXIT_OK


# -- tag -------------------------------------------------------------------------------------------


def _add_tag(sub, parents) -> None:
    t = sub.add_parser("tag", parents=parents, help="add and remove tags on samples",
                       description="Tag samples. A tag is a word (punchy: a value of the label "
                       "'tag', many per sample) or KEY:VALUE (mood:dark: the label KEY, one "
                       "value per sample, which replaces the index's). Tags follow a file that "
                       "is moved or renamed, survive re-indexing, colour the map, filter "
                       "searches and train neighbourhoods like any label.")
    add_options(t, ATLAS)
    t.add_argument("items", nargs="+", metavar="ITEM", help=ITEMS_HELP)
    t.add_argument("--add", "-a", action="append", default=[], metavar="TAG",
                   help="a tag to add (repeat for more)")
    t.add_argument("--remove", "-r", action="append", default=[], metavar="TAG",
                   help="a tag to remove (KEY:* any value of KEY; * every plain tag)")
    t.set_defaults(func=cmd_tag)


def cmd_tag(args: argparse.Namespace) -> int:
    """``soundatlas tag``: add and remove tags."""
    if not args.add and not args.remove:
        raise UsageError("nothing to do: give --add TAG or --remove TAG")
    from soundatlas.errors import NotFoundError, ParameterError

    with _curating(args) as atlas:
        ids = resolve_items(atlas, args.items)
        try:
            changed = atlas.tag(ids, add=args.add, remove=args.remove)
        except NotFoundError:
            raise
        except ParameterError as exc:  # a tag the command line gave that cannot be one: misuse
            raise UsageError(str(exc)) from None
    return _report(args, {"samples": len(ids), "changed": changed},
                   f"{len(ids)} sample{'s' * (len(ids) != 1)}: {changed} tag"
                   f"{'s' * (changed != 1)} changed")


# -- star ------------------------------------------------------------------------------------------


def _add_star(sub, parents) -> None:
    s = sub.add_parser("star", parents=parents, help="star (or unstar) samples",
                       description="Star samples: the label 'starred' = yes, kept like tags.")
    add_options(s, ATLAS)
    s.add_argument("items", nargs="+", metavar="ITEM", help=ITEMS_HELP)
    s.add_argument("--remove", action="store_true", help="unstar them")
    s.set_defaults(func=cmd_star)


def cmd_star(args: argparse.Namespace) -> int:
    """``soundatlas star``: star or unstar."""
    with _curating(args) as atlas:
        ids = resolve_items(atlas, args.items)
        changed = atlas.star(ids, starred=not args.remove)
    verb = "unstarred" if args.remove else "starred"
    return _report(args, {"samples": len(ids), "changed": changed},
                   f"{changed} of {len(ids)} sample{'s' * (len(ids) != 1)} {verb}")


# -- note ------------------------------------------------------------------------------------------


def _add_note(sub, parents) -> None:
    n = sub.add_parser("note", parents=parents, help="read or write a sample's note",
                       description="A sample's note: printed without TEXT, replaced with it; "
                       "--clear removes it.")
    add_options(n, ATLAS)
    n.add_argument("item", metavar="ITEM", help="a sample id or path")
    n.add_argument("text", nargs="?", metavar="TEXT", help="the new note")
    n.add_argument("--clear", action="store_true", help="remove the note")
    n.set_defaults(func=cmd_note)


def cmd_note(args: argparse.Namespace) -> int:
    """``soundatlas note``: read or write a note."""
    if args.clear and args.text is not None:
        raise UsageError("give TEXT or --clear, not both")
    with _curating(args) as atlas:
        ids = resolve_items(atlas, [args.item])
        if len(ids) != 1:
            raise UsageError(f"{args.item} names {len(ids)} samples; a note is for one")
        if args.text is not None or args.clear:
            atlas.set_note(ids[0], None if args.clear else args.text)
        note = atlas.curation_of(ids).get(ids[0], {}).get("note")
    if args.json:
        print_json({"id": ids[0], "note": note})
    elif args.clear:
        print(f"note of sample {ids[0]} cleared")
    elif args.text is not None:
        print(f"note of sample {ids[0]} written")
    elif note is not None:
        print(shown(note, keep="\n\t"))  # a note written over HTTP may hold escape sequences
    else:  # nothing on stdout, where a script reads the note
        print(f"sample {ids[0]} has no note", file=sys.stderr)
    return EXIT_OK


# -- collections -----------------------------------------------------------------------------------


def _actions(parser, parents):
    """The actions of a command with sub-actions (``collections list``, ``tags export``):
    a function ``(name, help) -> parser`` that adds one, with ``--atlas`` and ``parents``."""
    # --atlas before the action too (`collections --atlas A`, the default action): its own dest,
    # since an action's own --atlas default would overwrite it (argparse sets a subparser's
    # defaults over the command's values)
    parser.add_argument("--atlas", dest="command_atlas", metavar="DIR",
                        help="atlas directory, before ACTION or for the default one (default: "
                        "$SOUNDATLAS_ATLAS or ./.soundatlas)")
    parser.add_argument("--json", dest="command_json", action="store_true",
                        help="print JSON, before ACTION or for the default one")
    parser.add_argument("-q", "--quiet", dest="command_quiet", action="store_true",
                        help="no progress bar, before ACTION or for the default one")
    acts = parser.add_subparsers(dest="action", metavar="ACTION",
                                 help="what to do (default: list; ACTION --help for its options)")

    def action(name: str, help: str):
        a = acts.add_parser(name, parents=parents, help=help,
                            description=help[0].upper() + help[1:] + ".")
        add_options(a, ATLAS)
        return a

    return action


def _add_collections(sub, parents) -> None:
    c = sub.add_parser("collections", help="list and edit collections",
                       description="Named, ordered collections of samples, kept in the atlas "
                       "(they follow moved files; a deleted file stays, shown as missing).")
    action = _actions(c, parents)

    action("list", "every collection with its size (the default)")
    action("show", "a collection's samples in order").add_argument("name", metavar="NAME")
    for name, help in (("add", "append samples (the collection is made when absent)"),
                       ("remove", "take samples out")):
        a = action(name, help)
        a.add_argument("name", metavar="NAME")
        a.add_argument("items", nargs="+", metavar="ITEM", help=ITEMS_HELP)
    ren = action("rename", "rename a collection")
    ren.add_argument("name", metavar="NAME")
    ren.add_argument("new_name", metavar="NEW")
    action("delete", "delete a collection (its samples stay)").add_argument("name",
                                                                            metavar="NAME")
    ex = action("export", "write a collection as M3U, CSV or a zip of its files")
    ex.add_argument("name", metavar="NAME")
    ex.add_argument("--output", "-o", required=True, metavar="FILE",
                    help="FILE.m3u, FILE.csv or FILE.zip (the format from the extension)")
    c.set_defaults(func=cmd_collections)


def _defaults(args: argparse.Namespace) -> str:
    """The action (``list`` when none is given), and ``args.atlas``, ``args.json`` and
    ``args.quiet`` from wherever they were given, before the action or after it (an
    action's ``--atlas`` wins)."""
    if args.action is None:
        args.json = args.quiet = False
        args.atlas = None
    if args.atlas is None:
        args.atlas = args.command_atlas
    args.json = args.json or args.command_json
    args.quiet = args.quiet or args.command_quiet
    return args.action or "list"


def cmd_collections(args: argparse.Namespace) -> int:
    """``soundatlas collections``: list, show, add, remove, rename, delete, export."""
    action = _defaults(args)
    if action == "export":
        return _export_collection(args)
    with _curating(args) as atlas:
        if action == "list":
            rows = atlas.collections()
            if args.json:
                print_json(rows)
            else:
                for r in rows:
                    gone = f", {r['n_missing']} missing" if r["n_missing"] else ""
                    print(f"{r['name']}  ({r['n']} sample{'s' * (r['n'] != 1)}{gone})")
                if not rows:  # on stderr: nothing on stdout, where a script reads the names
                    print("no collections yet: `soundatlas collections add NAME ITEMS` makes "
                          "one", file=sys.stderr)
            return EXIT_OK
        if action == "show":
            members = atlas.collection_members(args.name)
            if args.json:
                print_json([{"id": sid, "path": path} for sid, path in members])
            else:
                for sid, path in members:
                    print(f"{sid if sid is not None else 'missing':>8}  {shown(path)}")
            return EXIT_OK
        if action in ("add", "remove"):
            ids = resolve_items(atlas, args.items)
            n = (atlas.add_to_collection(args.name, ids, create=True) if action == "add"
                 else atlas.remove_from_collection(args.name, ids))
            word = "added to" if action == "add" else "removed from"
            return _report(args, {"collection": args.name, "changed": n},
                           f"{n} sample{'s' * (n != 1)} {word} {args.name!r}")
        if action == "rename":
            atlas.rename_collection(args.name, args.new_name)
            return _report(args, {"collection": args.new_name},
                           f"{args.name!r} is now {args.new_name!r}")
        atlas.delete_collection(args.name)
        return _report(args, {"deleted": args.name}, f"deleted {args.name!r}")


def _export_collection(args: argparse.Namespace) -> int:
    from soundatlas.atlas import Atlas
    from soundatlas.exports import FORMATS, csv_text, m3u_text, write_zip

    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"--output {out}: the extension says the format: "
                         f"{', '.join('.' + f for f in FORMATS)}")
    check_output(out)
    with Atlas.open(atlas_dir(args)) as atlas:
        members = atlas.collection_members(args.name)
        ids = [sid for sid, _ in members if sid is not None]
        missing = [path for sid, path in members if sid is None]
        found = {r.id: r for r in atlas.samples(ids)}
        records = [found[i] for i in ids]
        root = atlas.library
        if fmt == "m3u":
            with writing(out):
                out.write_text(m3u_text(records, root), encoding="utf-8")
        elif fmt == "csv":
            keys = atlas.label_keys()
            text = csv_text(records, keys, atlas.labels_of(ids))
            with writing(out):
                out.write_text(text, encoding="utf-8", newline="")  # its CRLF as it is
        else:
            files = [(r.path, root / r.path) for r in records]
            absent = [rel for rel, p in files if not p.is_file()]
            if absent:
                raise UsageError(f"{len(absent)} file(s) of {args.name!r} are no longer in the "
                                 f"library: {', '.join(absent[:5])}; run soundatlas index")
            tmp = out.with_name(out.name + ".part")
            with writing(out):
                try:
                    write_zip(tmp, files)
                    tmp.replace(out)
                except BaseException:  # a file that cannot be read, a full disk, Ctrl-C
                    tmp.unlink(missing_ok=True)
                    raise
    note = f" ({len(missing)} missing left out: {', '.join(missing[:5])})" if missing else ""
    return _report(args, {"collection": args.name, "output": str(out), "n": len(records),
                          "missing": missing},
                   f"wrote {len(records)} sample{'s' * (len(records) != 1)} to {out}{note}")


# -- tags ------------------------------------------------------------------------------------------


def _add_tags(sub, parents) -> None:
    t = sub.add_parser("tags", help="list, export and import tags",
                       description="The atlas's tags: list them with their counts, export them "
                       "to CSV (path, hash, tag, suggested, confidence; a star is the tag "
                       "'starred'), import such a CSV (rows find their sample by hash, else by "
                       "path, so a hand-written path,tag CSV works), list or forget the tags of "
                       "files no longer in the library.")
    action = _actions(t, parents)

    action("list", "every tag with its number of samples (the default)")
    action("export", "write every tag to a CSV file").add_argument("file", metavar="FILE.csv")
    action("import", "add the tags of a CSV file").add_argument("file", metavar="FILE.csv")
    action("missing", "what is kept for files no longer in the library")
    action("forget-missing", "forget what is kept for files no longer there")
    t.set_defaults(func=cmd_tags)


def cmd_tags(args: argparse.Namespace) -> int:
    """``soundatlas tags``: list, export, import, missing, forget-missing."""
    action = _defaults(args)
    if action == "export":
        check_output(args.file, flag=None)
    with _curating(args) as atlas:
        if action == "list":  # the samples the user tagged, not those the index labelled so
            tags, n_starred = atlas.tag_counts()
            if args.json:
                print_json({"tags": tags, "starred": n_starred})
            else:
                for tag, n in tags.items():
                    print(f"{n:8d}  {tag}")
                print(f"{n_starred:8d}  (starred)")
            return EXIT_OK
        if action == "export":
            rows = atlas.tag_rows()
            with writing(args.file), open(args.file, "w", newline="", encoding="utf-8") as f:
                # CRLF rows (RFC 4180): a path holding a CR is quoted (exports.csv_text)
                w = csv.DictWriter(f, TAG_CSV_COLUMNS, lineterminator="\r\n")
                w.writeheader()
                for r in rows:  # a path or tag a spreadsheet would run as a formula: text
                    w.writerow({**r, "path": spreadsheet_cell(r["path"]),
                                "tag": spreadsheet_cell(r["tag"]), "suggested": int(r["suggested"]),
                                "confidence": "" if r["confidence"] is None
                                else repr(r["confidence"])})
            return _report(args, {"file": args.file, "rows": len(rows)},
                           f"wrote {len(rows)} tag{'s' * (len(rows) != 1)} to {args.file}")
        if action == "import":
            rows = _read_tag_csv(Path(args.file))
            result = atlas.import_tag_rows(rows)
            gone = (f", {result['missing']} for files not in the library (kept as missing)"
                    if result["missing"] else "")
            return _report(args, {"file": args.file, **result},
                           f"{result['changed']} tag{'s' * (result['changed'] != 1)} added or "
                           f"changed, {result['unchanged']} there already{gone}")
        if action == "missing":
            items = atlas.missing_items()
            if args.json:
                print_json(items)
            else:
                for m in items:
                    what = [*m["tags"], *(["starred"] if m["starred"] else []),
                            *(f"in {c!r}" for c in m["collections"]),
                            *(["a note"] if m["note"] else [])]
                    print(f"{shown(m['path'])}: {shown(', '.join(what))}")
            return EXIT_OK
        n = atlas.forget_missing()
        return _report(args, {"forgotten": n},
                       f"forgot {n} item{'s' * (n != 1)} no longer in the library")


def _read_tag_csv(path: Path) -> list[dict]:
    """The rows of a tags CSV (UTF-8, a BOM allowed); UsageError naming what is wrong."""
    try:
        # newline="": a CR inside a quoted cell (a file name's) is the name's, not a line end
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    # the csv module's own line handling: a quoted cell may hold a line break (a file name)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    if "tag" not in fields or not ({"path", "hash"} & set(fields)):
        raise UsageError(f"{path}: needs a 'tag' column and a 'path' or 'hash' column "
                         f"(it has: {', '.join(fields) or 'none'})")
    if len(fields) != len(set(fields)):
        raise UsageError(f"{path}: a column appears twice: {', '.join(fields)}")
    rows, end = [], reader.line_num  # the header's last line
    for row in reader:  # each row with the line it starts on (a cell may hold a line break)
        unquoted = {k: from_spreadsheet_cell(row[k]) for k in ("path", "tag")
                    if isinstance(row.get(k), str)}  # as tags export wrote them
        rows.append({**row, **unquoted, "line": end + 1})
        end = reader.line_num
    return rows


# -- suggest ---------------------------------------------------------------------------------------


def _add_suggest(sub, parents) -> None:
    from soundatlas.suggest import SPACES

    s = sub.add_parser("suggest", parents=parents,
                       help="suggest labels from the nearest labelled samples",
                       description="For every embedded sample without label KEY, the value most "
                       "of its k nearest samples that have KEY carry, with a confidence (the "
                       "share of those k that carry it), marked far where the sample is farther "
                       "from every labelled one than 99 % of them are from each other; most "
                       "confident first, the far ones last. --apply stores those at or above "
                       "--min-confidence as tags marked suggested, not the far ones. With "
                       "--from, another library's labelled samples vote instead: label a new "
                       "pack from a library you have labelled.")
    add_options(s, ATLAS)
    s.add_argument("--label", "-l", required=True, metavar="KEY",
                   help="the label to suggest (the user's tag keys count: tag, mood, ...)")
    s.add_argument("--model", "-m", metavar="NAME",
                   help="the model whose space is searched (default: the one that has embedded "
                   "the most samples)")
    s.add_argument("--space", choices=SPACES, default=None,
                   help="where nearness is measured: timbre, the timbre block of the model's "
                   "similarity vectors (its hidden layer); similarity, the whole vectors (the "
                   "hidden layer beside a pitch profile); map, its 3-D map; input, the input "
                   "space (mean log-CQT; no model) (default: timbre, and similarity with "
                   "--from: each measured best there, docs/RESULTS.md)")
    s.add_argument("--from", dest="reference", metavar="ATLAS",
                   help="the atlas of another, labelled library whose samples vote (their "
                   "index's and user's labels, not their suggestions); the same model must have "
                   "embedded both (default: this atlas's own labelled samples vote)")
    s.add_argument("-k", type=positive_int, default=10, metavar="N",
                   help="labelled neighbours that vote (default: 10)")
    s.add_argument("--min-confidence", type=fraction, default=0.0, metavar="P",
                   help="leave out suggestions below P, in 0..1 (default: 0)")
    s.add_argument("--apply", action="store_true",
                   help="store the suggestions shown as tags marked suggested (not those marked "
                   "far: unlike every labelled sample)")
    s.add_argument("--keep-far", action="store_true",
                   help="with --apply, store the suggestions marked far too")
    s.add_argument("--limit", type=nonnegative_int, default=50, metavar="N",
                   help="suggestions printed (default: 50; all with --json or --apply)")
    s.set_defaults(func=cmd_suggest)


def cmd_suggest(args: argparse.Namespace) -> int:
    """``soundatlas suggest``: labels from the map."""
    from soundatlas.atlas import Atlas, default_atlas_dir
    from soundatlas.atlas.curation import STAR_KEY
    from soundatlas.suggest import suggest

    if args.apply and (":" in args.label or args.label == STAR_KEY):  # before any work
        why = ("(the star's label: star the samples instead)" if args.label == STAR_KEY
               else "(a ':' in its name: a tag is KEY:VALUE); without --apply the suggestions "
               "are shown")
        raise UsageError(f"--apply: label {args.label!r} cannot be stored as a tag {why}")
    if args.keep_far and not args.apply:
        raise UsageError("--keep-far: only with --apply (without it nothing is stored, and the "
                         "suggestions marked far are shown all the same)")
    if args.space is None:  # chosen on the tuning sets, each for its use (docs/RESULTS.md)
        args.space = "similarity" if args.reference else "timbre"
    if args.reference is not None and not args.reference.strip():  # an unset "$REF"
        raise UsageError("--from: empty; give the atlas of the labelled library")
    here = atlas_dir(args).resolve()
    if args.reference and here in (Path(args.reference).resolve(),
                                   default_atlas_dir(Path(args.reference)).resolve()):
        raise UsageError(f"--from {args.reference} is the atlas suggested for (or its library); "
                         "without --from its own labelled samples vote")
    with contextlib.ExitStack() as stack:
        atlas = stack.enter_context(Atlas.open(atlas_dir(args), write=args.apply, tidy=False))
        reference = (stack.enter_context(Atlas.open(Path(args.reference), tidy=False,
                                                    option="--from"))
                     if args.reference else None)
        model = None
        if args.space != "input":
            if args.model:
                theirs = reference.find_model(args.model) if reference is not None else None
                if theirs is not None and atlas.find_model(args.model) is None:
                    from soundatlas.artifact import embed_from

                    raise AtlasError(f"no model named {args.model!r} in {atlas.path}, which the "
                                     f"reference has: `{embed_from(atlas, reference, theirs)}` "
                                     "embeds it")
                model = atlas.model(args.model)
                if not model.n_embedded:  # the atlas's state, not the command line: exit 1
                    raise AtlasError(f"model {model.name!r} has embedded no sample of this "
                                     f"atlas: run soundatlas embed -m {model.name}")
            else:
                usable = [m for m in atlas.models() if m.n_embedded]
                if not usable:
                    raise AtlasError("no model has embedded this atlas: run soundatlas map, or "
                                     "give --space input")
                model = max(usable, key=lambda m: m.n_embedded)
        found = suggest(atlas, args.label, model=model, space=args.space, k=args.k,
                        min_confidence=args.min_confidence, reference=reference)
        paths = atlas.paths([s.sample_id for s in found[: None if args.json or args.apply
                                                        else args.limit]])
        # samples the model has no point for get no suggestion: say so, not an empty answer
        unplaced = atlas.n_samples() - model.n_embedded if model is not None else 0
        # a value labelled on fewer samples than k votes: its confidence cannot reach 1 (the
        # voters suggest counts: the labels as the page reads them)
        voters = (atlas.labels(args.label) if reference is None
                  else reference.labels(args.label, suggested=False))
        largest = max(collections.Counter(voters.values()).values(), default=0)
        applied, refused = 0, {}
        stored = [s for s in found if args.keep_far or not s.far]
        if args.apply and stored:
            applied, refused = _store_suggestions(atlas, args.label, stored)
    n_far = sum(s.far for s in found)
    rows = [{"id": s.sample_id, "path": paths.get(s.sample_id), "value": s.value,
             "confidence": round(s.confidence, 4), "far": s.far} for s in found]
    if args.json:
        print_json({"label": args.label, "space": args.space,
                    "model": model.name if model else None, "k": args.k,
                    "from": args.reference,
                    "n": len(rows), "n_far": n_far, "applied": applied,
                    "n_not_embedded": unplaced,
                    "not_stored": [{"value": v, "n": n, "why": why}
                                   for v, (n, why) in refused.items()],
                    "suggestions": rows})
        return EXIT_OK
    for r in rows[: args.limit]:
        print(f"{r['confidence']:5.2f}  {args.label}={shown(r['value'])}  {shown(r['path'])}"
              + ("  [far]" if r["far"] else ""))
    more = len(rows) - min(len(rows), args.limit)
    print(f"{len(rows)} suggestion{'s' * (len(rows) != 1)}"
          + (f" ({more} not shown)" if more else "")
          + (f"; {applied} stored as suggested tags" if args.apply else ""))
    if n_far:
        left = " and not stored (--keep-far stores them)" if args.apply and not args.keep_far \
            else ""
        print(f"  {n_far} marked far{left}: farther from every labelled sample than 99 % of "
              "them are from their own nearest, so like none of those that voted")
    for value, (n, why) in refused.items():
        print(f"  not stored: {n} suggestion{'s' * (n != 1)} of {args.label}={shown(value)}: "
              f"{shown(why)}")
    if unplaced:
        print(f"  {counted(unplaced, 'sample')} without a point for model {model.name} got "
              f"no suggestion: run soundatlas embed -m {model.name}")
    if found and largest == 1:
        print(f"  each value of {args.label} is on one labelled sample: the confidences "
              "cannot tell the suggestions apart (label more samples of each)")
    elif found and largest < args.k:
        print(f"  no value of {args.label} is on more than {largest} labelled samples, so no "
              f"confidence can exceed {largest}/{args.k} = {largest / args.k:.2f}; -k "
              f"{largest} lets the confidences tell more apart")
    return EXIT_OK


def _store_suggestions(atlas, label: str, found) -> tuple[int, dict]:
    """Store suggestions as suggested tags in one transaction: (pairs changed, {value: (n,
    why)} for the values a tag cannot hold, e.g. a folder name with a comma; the others are
    stored)."""
    from soundatlas.atlas.curation import TAG_KEY, parse_tag
    from soundatlas.errors import ParameterError

    groups: dict[tuple[str, float], list[int]] = {}
    refused: dict[str, tuple[int, str]] = {}
    for s in found:
        tag = s.value if label == TAG_KEY else f"{label}:{s.value}"
        try:
            parse_tag(tag)
        except ParameterError as exc:
            n, _ = refused.get(s.value, (0, ""))
            refused[s.value] = (n + 1, str(exc))
            continue
        groups.setdefault((tag, s.confidence), []).append(s.sample_id)
    return atlas.add_suggestions((ids, tag, conf) for (tag, conf), ids in groups.items()), refused


def register(sub, parents) -> None:
    """Add ``tag``, ``star``, ``note``, ``collections``, ``tags`` and ``suggest`` to ``sub``."""
    for add in (_add_tag, _add_star, _add_note, _add_collections, _add_tags, _add_suggest):
        add(sub, parents)
