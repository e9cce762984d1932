"""What a render is made of: the items the sets plan (a melodic :class:`Note`, a :class:`DrumHit`,
a procedural :class:`SynthSound`), each with its file path and labels, and what a render reports
(:class:`RenderSummary`, :class:`PartSummary`, :class:`SkippedNote`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: the reason given for a note that rendered silent (it is not written; silent.csv lists it).
SILENT_REASON = "silent: the preset has no sound for this note at this velocity"


class _Planned:
    """What every planned item has: ``path`` (its file, relative to the library root, with
    forward slashes), ``labels`` (its manifest row but the path) and ``group``."""

    _group_field = ""  # the field that names the item's group

    @property
    def group(self) -> str:
        """What the silent-note summary counts by: the instrument, kit or patch."""
        return getattr(self, self._group_field)


@dataclass(frozen=True)
class Note(_Planned):
    """One melodic note to render: a class name, its GM program, and how it is played.

    ``family``/``bank`` are labels of the gm set (None in the demo set); ``folder`` is the
    sub-folder of OUT its file goes to ("" in the demo set).
    """

    instrument: str
    program: int
    pitch: int
    velocity: int
    articulation: str
    duration: float  # seconds the key is held
    family: str | None = None
    bank: str | None = None
    folder: str = ""
    extension: str = "wav"
    _group_field = "instrument"

    @property
    def path(self) -> str:
        """``[<folder>/]<instrument>/<instrument>_<pitch>_v<velocity>_<articulation>.<ext>``."""
        name = (
            f"{self.instrument}_{self.pitch:03d}_v{self.velocity:03d}_{self.articulation}"
            f".{self.extension}"
        )
        prefix = f"{self.folder}/" if self.folder else ""
        return f"{prefix}{self.instrument}/{name}"

    @property
    def labels(self) -> dict[str, str]:
        """instrument, pitch, velocity, articulation; family and bank in the gm set."""
        labels = {
            "instrument": self.instrument,
            "pitch": str(self.pitch),
            "velocity": str(self.velocity),
            "articulation": self.articulation,
        }
        if self.family is not None:
            labels["family"] = self.family
        if self.bank is not None:
            labels["bank"] = self.bank
        return labels


@dataclass(frozen=True)
class DrumHit(_Planned):
    """One hit of a drum kit: kit program (bank 128) and key, played on MIDI channel 10."""

    kit: str
    kit_program: int
    key: int
    velocity: int
    drum: str
    drum_class: str
    bank: str
    folder: str
    extension: str = "wav"
    _group_field = "kit"

    @property
    def path(self) -> str:
        """``<folder>/<kit>/<kit>_<key>_<drum>_v<velocity>.<ext>``."""
        name = f"{self.kit}_{self.key:03d}_{self.drum}_v{self.velocity:03d}.{self.extension}"
        return f"{self.folder}/{self.kit}/{name}"

    @property
    def labels(self) -> dict[str, str]:
        """drum, drum_class, kit, velocity, bank."""
        return {
            "drum": self.drum,
            "drum_class": self.drum_class,
            "kit": self.kit,
            "velocity": str(self.velocity),
            "bank": self.bank,
        }


@dataclass(frozen=True)
class SynthSound(_Planned):
    """One procedural one-shot: sound ``index`` of ``seed`` (see :mod:`soundatlas.procedural`)."""

    seed: int
    index: int
    patch: str
    label_items: tuple[tuple[str, str], ...]
    folder: str
    extension: str = "wav"
    _group_field = "patch"

    @property
    def path(self) -> str:
        """``<folder>/<patch>/<patch>_<index>.<ext>``."""
        return f"{self.folder}/{self.patch}/{self.patch}_{self.index:07d}.{self.extension}"

    @property
    def labels(self) -> dict[str, str]:
        """The labels of :attr:`soundatlas.procedural.Sound.labels`."""
        return dict(self.label_items)


Item = Note | DrumHit | SynthSound


@dataclass(frozen=True)
class SkippedNote:
    """A note (or drum hit, or procedural sound) that was not written, and why."""

    note: Item
    reason: str

    @property
    def silent(self) -> bool:
        """Whether it was skipped for rendering silent (:data:`SILENT_REASON`)."""
        return self.reason.startswith("silent")


@dataclass
class PartSummary:
    """One (set, bank) of a render: its folder under OUT and what was written there."""

    sound_set: str
    bank: str
    folder: str
    n_notes: int
    n_files_written: int
    n_silent: int
    n_bytes: int


@dataclass
class RenderSummary:
    """What :func:`~soundatlas.demo.library.render_library` did.

    Attributes
    ----------
    n_notes, n_files_written : int
        Items planned, files written.
    seconds : float
        Wall time of the render.
    out : Path
        The library root.
    skipped : list of SkippedNote
        The items not written, silent or not renderable.
    peak : float
        The largest absolute sample over the written files (1.0 = full scale, before clipping).
    clipped : list
        The items whose float output exceeded full scale.
    sound_set : str
        The set rendered.
    n_bytes : int
        Bytes written.
    parts : list of PartSummary
        One per (set, bank) rendered.
    messages : list of str
        What the SoundFont lacks (programs, kits) and was therefore not planned.
    """

    n_notes: int
    n_files_written: int
    seconds: float
    out: Path
    skipped: list[SkippedNote] = field(default_factory=list)
    peak: float = 0.0
    clipped: list[Item] = field(default_factory=list)
    sound_set: str = "demo"
    n_bytes: int = 0
    parts: list[PartSummary] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def silent(self) -> list[SkippedNote]:
        """The skipped items that rendered silent."""
        return [s for s in self.skipped if s.silent]

    def silent_lines(self) -> list[str]:
        """Summarise the silent notes, one line per part that has some.

        Returns
        -------
        list of str
            :func:`silent_summary` of each part's silent notes, prefixed with the part's folder
            when the render has several parts.
        """
        by_folder: dict[str, list[SkippedNote]] = {}
        for s in self.silent:
            by_folder.setdefault(s.note.folder, []).append(s)
        lines = []
        for folder, skipped in by_folder.items():
            line = silent_summary(skipped)
            lines.append(f"{folder}: {line}" if len(self.parts) > 1 and folder else line)
        return lines


def silent_summary(skipped: Iterable[SkippedNote]) -> str:
    """Count silent notes by instrument (kit for drums, patch for procedural sounds).

    Returns
    -------
    str
        E.g. "37 silent notes not written: violin 5, recorder 2, contrabass 30", the names in
        the order they first occur.
    """
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.note.group] = counts.get(s.note.group, 0) + 1
    n = sum(counts.values())
    what = "note" if n == 1 else "notes"
    return f"{n} silent {what} not written: " + ", ".join(f"{k} {v}" for k, v in counts.items())
