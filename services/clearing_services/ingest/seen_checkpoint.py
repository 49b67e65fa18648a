"""Checkpoints of an owned partition's seen ids, so that its next owner restores in
time proportional to the checkpoint plus the seen log after it, not to the whole log.

Why: a takeover read the partition's whole seen topic back (every id of the
window, 35 days by default); near 10^8 ids it could not finish inside its read
limit. A checkpoint is the partition's RocksDB checkpoint (hard links of its
immutable files, after a flush), its filter, and a manifest that names the seen
topic by its topic id (a topic deleted and made again never matches) and the seen
offset the state covers: every ``SeenEvents`` record before that offset, none
after. Its folder is written under a temporary name, synced and renamed into place,
so a reader finds a whole checkpoint or none; the newest ``KEEP`` stay. A checkpoint
costs what changed since the last: the database's files and the filter's full
segments never change, so both are linked, not copied (the filter was 0.3-0.6 s of
a 10^7-id checkpoint when written whole).

Where: ``CLEARING_CHECKPOINT_DIR`` (default: the state folder's ``ingest-checkpoints``),
which every ingest worker that may take a partition over must share (on one host,
the state folder; across hosts, a shared volume). A worker that finds no usable
checkpoint reads the whole seen topic, as before: slower, never wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rocksdict import Cache, Checkpoint

from clearing_core.ingest.seen_filter import SeenFilter, Segment
from clearing_services.ingest.seen_disk import DiskEntries

FORMAT = 1  # of the folder and manifest; another is ignored (read the log instead)
HASHES = "fnv1a64-splitmix64"  # seen_filter.id_hashes: a filter saved with others is unusable
KEEP = 2  # a restore in progress keeps its checkpoint while the owner writes the next
PARTIAL_SECONDS_MAX = 3_600  # a checkpoint still unfinished after this was abandoned
_DB, _FILTER, _MANIFEST = "db", "filter", "manifest.json"


@dataclass(frozen=True)
class SegmentFile:
    """One filter segment of a checkpoint, in the file ``name`` of its ``filter`` folder."""

    serial: int
    capacity: int
    count: int
    newest_ms: int
    oldest_ms: int

    @property
    def name(self) -> str:  # a full segment keeps its name, and its file is linked
        return f"{self.serial}-{self.count}.bits"


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint covers: ``seen_topic[partition]`` before ``seen_offset``."""

    seen_topic: str
    partition: int
    topic_id: str
    seen_offset: int
    days: dict[int, int]  # day start ms -> ids in that day's column family
    segments: tuple[SegmentFile, ...] = ()
    next_serial: int = 0
    format: int = FORMAT
    hashes: str = HASHES

    @classmethod
    def parse(cls, text: str) -> Manifest:
        raw = json.loads(text)
        raw["days"] = {int(day): int(count) for day, count in raw["days"].items()}
        raw["segments"] = tuple(SegmentFile(**segment) for segment in raw["segments"])
        return cls(**raw)


@dataclass(frozen=True)
class Found:
    """A usable checkpoint: its folder and manifest."""

    folder: Path
    manifest: Manifest


class Checkpoints:
    """The checkpoints of every partition under ``root``, one folder per partition."""

    def __init__(self, root: Path, keep: int = KEEP) -> None:
        assert keep >= 1
        self.root = root
        self.keep = keep
        # per partition: the checkpoint this process wrote or restored last, whose
        # filter files a new checkpoint may link (the same filter's history, never
        # another owner's, whose serials may repeat)
        self._last: dict[tuple[str, int], Path] = {}

    def _folder(self, seen_topic: str, partition: int) -> Path:
        return self.root / f"{seen_topic}-{partition}"

    def write(self, entries: DiskEntries, manifest: Manifest) -> Path:
        """Checkpoint ``entries`` as ``manifest`` says (its filter's segments are the
        entries'); the older ones past ``keep`` go."""
        folder = self._folder(manifest.seen_topic, manifest.partition)
        final = folder / f"{manifest.seen_offset:020d}"
        if final.exists():  # this offset is checkpointed already
            return final
        temporary = folder / f".partial-{manifest.seen_offset}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        (temporary / _FILTER).mkdir(parents=True)
        Checkpoint(entries.db).create_checkpoint(str(temporary / _DB))  # flushed, synced
        last = self._last.get((manifest.seen_topic, manifest.partition))
        segments = _save_segments(entries.filter, temporary / _FILTER, last)
        manifest = replace(manifest, segments=segments, next_serial=entries.filter.next_serial)
        with (temporary / _MANIFEST).open("w") as out:
            out.write(json.dumps(asdict(manifest)))
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(final)
        _sync_folder(folder)
        self._last[(manifest.seen_topic, manifest.partition)] = final
        for older in sorted(folder.glob("[0-9]*"))[: -self.keep]:
            shutil.rmtree(older, ignore_errors=True)
        stale = time.time() - PARTIAL_SECONDS_MAX  # a writer killed mid-way left these
        for partial in folder.glob(".partial-*"):
            if partial.stat().st_mtime < stale:
                shutil.rmtree(partial, ignore_errors=True)
        return final

    def newest(self, seen_topic: str, partition: int, topic_id: str) -> Found | None:
        """The newest whole checkpoint of this partition of the topic as it is now."""
        for folder in sorted(self._folder(seen_topic, partition).glob("[0-9]*"), reverse=True):
            try:
                manifest = Manifest.parse((folder / _MANIFEST).read_text())
            except (OSError, ValueError, TypeError, KeyError):
                continue  # pruned while read, or not this format: an older one may do
            usable = (manifest.format, manifest.hashes, manifest.topic_id) == (
                FORMAT, HASHES, topic_id)  # fmt: skip
            if usable and (manifest.seen_topic, manifest.partition) == (seen_topic, partition):
                return Found(folder, manifest)
        return None

    def restore(self, found: Found, path: Path, cache: Cache) -> DiskEntries:
        """The entries of checkpoint ``found``, opened at ``path``: its immutable table
        files linked (copied across file systems), the rest copied, as RocksDB writes
        to those. Raises OSError or ValueError where the checkpoint cannot be used."""
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for source in (found.folder / _DB).iterdir():
            if source.suffix == ".sst":
                _link(source, path / source.name)
            else:
                shutil.copy2(source, path / source.name)
        manifest = found.manifest
        segments = [
            Segment(np.fromfile(found.folder / _FILTER / s.name, np.uint64), s.capacity,
                    s.count, s.newest_ms, s.serial, s.oldest_ms)
            for s in manifest.segments
        ]  # fmt: skip
        seen_filter = SeenFilter(segments, manifest.next_serial)
        entries = DiskEntries(path, cache, manifest.days, seen_filter)
        self._last[(manifest.seen_topic, manifest.partition)] = found.folder
        return entries


def _save_segments(
    seen_filter: SeenFilter, folder: Path, last: Path | None
) -> tuple[SegmentFile, ...]:
    """Each segment's bits in ``folder``: linked from the ``last`` checkpoint where it
    holds the same segment (full segments never change), else written and synced."""
    saved = []
    for segment in seen_filter.segments:
        file = SegmentFile(segment.serial, segment.capacity, segment.count, segment.newest_ms,
                           segment.oldest_ms)  # fmt: skip
        target = folder / file.name
        try:
            if last is None:
                raise FileNotFoundError(file.name)
            os.link(last / _FILTER / file.name, target)
        except OSError:  # not in the last checkpoint (or pruned since): written
            with target.open("wb") as out:
                segment.bits.tofile(out)
                out.flush()
                os.fsync(out.fileno())
        saved.append(file)
    return tuple(saved)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: copied
        shutil.copy2(source, target)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
