"""The labels `index` gives samples (``soundatlas.labels`` reads the sources): which sources an
atlas uses (checked before anything is written, stored, and changed only by what is given), and
every sample's labels written from them, streamed, and only when what they are made from
changed. ``summary`` is the run's ``IndexSummary``: its ``label_problems`` say what the manifest
could not label."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from soundatlas import labels as labels_mod
from soundatlas.atlas import Atlas
from soundatlas.atlas.store import chunked
from soundatlas.errors import ParameterError
from soundatlas.scratch import Scratch

__all__ = ["DEFAULT_MANIFEST", "check_label_sources", "resolve_label_sources", "update_labels"]

DEFAULT_MANIFEST = "metadata.csv"


def check_label_sources(library: Path, given) -> None:
    """A ParameterError for a name pattern that does not compile or a manifest that is not a
    file, before anything is written."""
    fields = given.to_dict() if isinstance(given, labels_mod.LabelSources) else (given or {})
    unknown = set(fields) - {"manifest", "folder", "name_pattern"}
    if unknown:
        raise ParameterError(f"label_sources: unknown setting {sorted(unknown)[0]!r}")
    if fields.get("name_pattern"):
        labels_mod.compile_name_pattern(fields["name_pattern"])
    if fields.get("manifest"):
        _manifest_path(library, fields["manifest"])


def _manifest_path(library: Path, given: str) -> str:
    """The manifest as stored: relative to the library when it is there, else absolute."""
    manifest = Path(given)
    if (manifest if manifest.is_absolute() else library / manifest).is_file():
        return given
    if not manifest.is_file():
        what = "is a directory, not a CSV file" if manifest.is_dir() else "does not exist"
        raise ParameterError(f"label manifest {given} {what}")
    return str(manifest.resolve())


def resolve_label_sources(atlas, library: Path, given):
    """Given sources (a LabelSources) win, and are stored; given fields (a dict) change only
    themselves; what is not given stays as stored, else the defaults (``metadata.csv`` when
    the library has one, folder labels). ``given`` has passed :func:`check_label_sources`."""
    import json

    if isinstance(given, labels_mod.LabelSources):
        given = given.to_dict()
        base = {}
    else:
        given = dict(given or {})
        stored = atlas.meta("label_sources")
        if stored and not given:
            return labels_mod.LabelSources(**json.loads(stored))
        base = json.loads(stored) if stored else {
            "manifest": DEFAULT_MANIFEST if (library / DEFAULT_MANIFEST).is_file() else None}
    if given.get("manifest"):
        given["manifest"] = _manifest_path(library, given["manifest"])
    sources = labels_mod.LabelSources(**{**base, **given})
    atlas.set_meta("label_sources", json.dumps(sources.to_dict()))
    return sources


_LABEL_INPUTS_META = "label_inputs"  # meta: what the labels were last made from (JSON)


def _label_inputs(library: Path, sources) -> dict:
    """What the labels are made from besides the samples' paths: the sources, and the
    manifest's size, modification time and status-change time. The last changes with every
    write, also one that keeps the size and sets the modification time back (``rsync -t``,
    ``touch -r``, an editor that keeps it), and no tool can set it: an edit is always seen,
    without reading the manifest."""
    out = {"sources": sources.to_dict(), "manifest": None}
    if sources.manifest:
        path = Path(sources.manifest)
        try:
            st = (path if path.is_absolute() else library / path).stat()
            out["manifest"] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        except OSError:
            out["manifest"] = "unreadable"
    return out


def update_labels(atlas: Atlas, library: Path, sources, summary,
                  changed: "set[int] | None" = None) -> None:
    """Every sample's labels from the sources, streamed: the manifest goes to a scratch table
    and the samples are labelled 900 at a time, so a million rows are never held at once.

    Skipped when nothing they are made from changed: no sample added, replaced or removed
    since they were written, the same sources, and the manifest of the same size and times (at
    1M samples rewriting 13M label rows took most of an `index` run that found no change).
    The problems the manifest had then are reported again. With the same sources and
    manifest, and ``changed`` given (the samples this run added or moved, when the labels
    were whole as it began), only those samples are labelled (``benchmarks/bench_labels.py``).

    Parameters
    ----------
    changed : set of int, optional
        The samples added or moved since every sample's labels were last written (None: not
        known, so all are written when anything changed).
    """
    inputs = _label_inputs(library, sources)
    before = atlas.meta(_LABEL_INPUTS_META)
    before = json.loads(before) if before is not None else None
    same = before is not None and before.get("inputs") == inputs
    if same and atlas.labels_unchanged_since_written():
        summary.label_problems.extend(before.get("problems", []))
        return
    n_problems = len(summary.label_problems)
    _write_labels(atlas, library, sources, summary, only=changed if same else None)
    atlas.set_meta(_LABEL_INPUTS_META, json.dumps(
        {"inputs": inputs, "problems": summary.label_problems[n_problems:]}))


def _write_labels(atlas: Atlas, library: Path, sources, summary,
                  only: "set[int] | None" = None) -> None:
    pattern = (labels_mod.compile_name_pattern(sources.name_pattern) if sources.name_pattern
               else None)
    with Scratch() as scratch:
        n_manifest = 0
        if sources.manifest:
            path = Path(sources.manifest)
            # nfc: the path composed, for a manifest written on one system and files named on
            # another (macOS writes names decomposed)
            scratch.conn.execute("CREATE TABLE manifest(path TEXT PRIMARY KEY, nfc TEXT,"
                                 " labels TEXT) WITHOUT ROWID")
            scratch.conn.execute("CREATE INDEX manifest_nfc ON manifest(nfc)")
            rows: list = []

            def keep(rel, kv):
                rows.append((rel, _nfc(rel), json.dumps(kv)))
                if len(rows) >= 5000:
                    scratch.insert("INSERT OR REPLACE INTO manifest VALUES (?, ?, ?)", rows)

            manifest = labels_mod.read_manifest(
                path if path.is_absolute() else library / path, library, on_row=keep)
            scratch.insert("INSERT OR REPLACE INTO manifest VALUES (?, ?, ?)", rows)
            summary.label_problems.extend(manifest.problems[:50])
            n_manifest = scratch.conn.execute("SELECT count(*) FROM manifest").fetchone()[0]
        matched = 0

        if only is not None and not n_manifest:  # nothing to count: those samples alone
            rows = ((sid, None, p) for sid, p in sorted(atlas.paths(only).items()))
        else:
            rows = atlas.iter_ids_hashes()

        def labelled():
            nonlocal matched
            for chunk in chunked(rows, 900):  # 900: SQLite's variable limit
                listed = {}
                if n_manifest:
                    paths = [p for _sid, _digest, p in chunk]
                    listed = dict(scratch.conn.execute(
                        "SELECT path, labels FROM manifest WHERE path IN "
                        f"({','.join('?' * len(paths))})", paths))
                    # a path the manifest lists in another Unicode form
                    other = {_nfc(p): p for p in paths if p not in listed}
                    if other:
                        listed.update((other[nfc], kv) for nfc, kv in scratch.conn.execute(
                            "SELECT nfc, labels FROM manifest WHERE nfc IN "
                            f"({','.join('?' * len(other))})", list(other)))
                    matched += len(listed)
                if only is not None:  # the others' labels stand; the manifest's count above
                    chunk = [row for row in chunk if row[0] in only]
                heard = atlas.audio_labels_of([sid for sid, _d, _p in chunk])
                for sid, _digest, p in chunk:
                    kv: dict[str, str] = dict(heard.get(sid, {}))  # the least explicit source
                    if sources.folder:
                        kv.update(labels_mod.folder_labels(p))
                    if pattern is not None:
                        kv.update(labels_mod.name_labels(p, pattern))
                    if p in listed:
                        kv.update(json.loads(listed[p]))  # the most explicit source: it wins
                    yield sid, kv

        atlas.replace_labels(labelled(), only=only)
        if n_manifest and n_manifest > matched:
            summary.label_problems.append(
                f"{n_manifest - matched} manifest rows name no indexed sample (missing or failed "
                "files)"
            )


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)
