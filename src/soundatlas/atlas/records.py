"""Typed records: what the atlas is told about a file, and what it hands back.

Each fact about a file is declared once, in the record of the stage that finds it; a later
record is made of earlier ones by dataclass inheritance (the fields of the last base come
first, then those of the bases before it, then the record's own)::

    FileEntry     path, size, mtime_ns              what a scan finds (soundatlas.scan)
    AudioFacts    hash, orig_sr, n_channels,        what hashing and decoding find
                  duration, file_duration,
                  truncated
    Analysis      AudioFacts + features             what analysing a file finds
                                                    (soundatlas.pipeline)
    NewSample     FileEntry + Analysis              a newly analysed file, as a batch commit
                                                    writes it
    SampleRecord  id + FileEntry + AudioFacts       a stored sample: a row of ``samples``
                  + segment, frame_offset, n_frames
    ModelRecord   id, name, dir, config, created,   a registered model: a row of ``models``
                  n_embedded
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["FileEntry", "AudioFacts", "Analysis", "NewSample", "SampleRecord", "ModelRecord"]


@dataclass(frozen=True)
class FileEntry:
    """An audio file of the library as a scan finds it.

    Attributes
    ----------
    path : str
        Relative to the library root, with forward slashes.
    size : int
        Bytes.
    mtime_ns : int
        Modification time, in nanoseconds.
    """

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class AudioFacts:
    """What hashing and decoding a file tell about it.

    Attributes
    ----------
    hash : str
        The content hash (``pipeline.content_hash``).
    orig_sr : int
        The file's sample rate.
    n_channels : int
        The file's channels.
    duration : float
        Seconds analysed.
    file_duration : float or None
        Seconds in the file, when the file says.
    truncated : bool
        Whether only the first ``max_duration`` seconds were read.
    """

    hash: str
    orig_sr: int
    n_channels: int
    duration: float
    file_duration: float | None
    truncated: bool


@dataclass(frozen=True)
class Analysis(AudioFacts):
    """What analysing one file finds: its audio facts and its log-CQT frames.

    Attributes
    ----------
    features : ndarray of shape (n_frames, n_bins)
        float32 log-CQT frames.
    labels : dict of str to str
        Labels found in the audio itself (a loop's ``tempo`` and ``key``: ``soundatlas.rhythm``).
    """

    features: np.ndarray
    labels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NewSample(Analysis, FileEntry):
    """A newly analysed file: its scan entry and its analysis, as ``Atlas.commit_batch`` takes it.

    Its fields are those of ``FileEntry`` then those of ``Analysis``.
    """

    @classmethod
    def of(cls, entry: FileEntry, analysis: Analysis) -> "NewSample":
        """The record of ``entry`` analysed as ``analysis``.

        Parameters
        ----------
        entry : FileEntry
            The file as the scan found it.
        analysis : Analysis
            What analysing it found.

        Returns
        -------
        NewSample
        """
        return cls(path=entry.path, size=entry.size, mtime_ns=entry.mtime_ns, **vars(analysis))


@dataclass(frozen=True)
class _Stored:
    id: int


@dataclass(frozen=True)
class SampleRecord(AudioFacts, FileEntry, _Stored):
    """A sample of the atlas: its id, file, audio facts and where its features lie.

    Its fields are ``id``, those of ``FileEntry``, those of ``AudioFacts``, then the three below.

    Attributes
    ----------
    segment : int
        The id of the feature segment that holds its frames.
    frame_offset : int
        Its first frame's row in that segment.
    n_frames : int
        Its number of frames.
    """

    segment: int
    frame_offset: int
    n_frames: int

    @classmethod
    def from_row(cls, row: tuple) -> "SampleRecord":
        """The record of a ``samples`` row read in the order of ``columns()``."""
        values = dict(zip(cls.columns(), row))
        values["truncated"] = bool(values["truncated"])
        return cls(**values)

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The ``samples`` columns the record is made of, in field order."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class ModelRecord:
    """A model registered in the atlas.

    Attributes
    ----------
    id : int
        Its id in the atlas.
    name : str
        Its name, unique in the atlas.
    dir : str
        Its directory: relative to the atlas, absolute, or ``shipped:NAME`` for a packaged model.
    config : dict
        The model's config (``artifact.ModelArtifact.config``).
    created : float
        When it was registered (``time.time()``).
    n_embedded : int
        Samples embedded with it.
    """

    id: int
    name: str
    dir: str
    config: dict
    created: float
    n_embedded: int

