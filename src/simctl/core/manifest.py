"""The experiment manifest: every launch and its status, kept on disk so
``simctl status`` can read it while or after the driver runs.

On disk it is a snapshot, ``<exp_path>/.simctl/manifest.json`` (one JSON
object, one job record per line), and a journal beside it,
``manifest.log``: one JSON line per save, holding the header and only the
records that changed (a line has the snapshot's own shape). :func:`load`
applies the journal's lines to the snapshot in order; a record replaces the
one with the same identity (key, run, launch time). So a save costs what
changed, not the size of the experiment's history.

* Writers (:class:`Writer`) take the experiment's lock file
  (:func:`locked`), read what other writers appended since their last save,
  then append one line with one ``write``. When the journal would grow past
  the snapshot (and whenever the snapshot is small), the save compacts
  instead: a new snapshot is written to a temporary file and renamed over
  the old one, then the journal is removed. The writer keeps the text of
  every record on disk, so it compacts without reading the files back; a
  save costs at most about twice what it appends, and a load reads at most
  twice the snapshot. Records are never dropped: every run is kept.
* Readers need no lock: a line still being appended (or torn by a crash)
  has no final newline yet and is ignored; a snapshot replaced while being
  opened is detected (its inode or change time changed) and read again.
* A driver uses one interface, :class:`ManifestFile`: it gives
  :meth:`ManifestFile.sync` the records that changed and gets back the ones
  other writers added; the merge happens inside.
* Reading imports nothing the file names: settings classes are found among
  the launchers' and those already loaded (:mod:`.serialize`).
* Files, not SQLite: see :class:`ManifestFile` (and ``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import cattrs

from ..log import logger
from . import bulk
from .errors import ConfigError
from .serialize import converter
from .status import Status

log = logger("manifest")

DIRNAME = ".simctl"
FILENAME = "manifest.json"
JOURNAL = "manifest.log"
#: 3: records may be updated by the journal ``manifest.log`` beside the snapshot
VERSION = 3
#: versions this simctl reads (1 lacks keys, handles and the driver's identity; 2 has no journal)
READABLE = (1, 2, 3)
#: a snapshot smaller than this is rewritten whole on every save (as cheap as an append)
SMALL = 64 * 1024

#: what tells two records apart: key (or name), run, launch time
Identity = tuple[Any, Any, Any]


@attrs.define
class JobRecord:
    """One launch of one model."""

    name: str
    entity_type: str
    job_id: str | None
    run: int
    launcher: str
    status: Status = Status.NEW
    returncode: int | None = None
    reason: str = ""
    ensemble: str | None = None
    path: str | None = None
    launched_at: float | None = None
    finished_at: float | None = None
    #: unique within the experiment: ``<ensemble>/<name>`` for a member, else the name
    key: str = ""
    #: what the launcher needs to find the job again after the driver is gone
    handle: dict[str, Any] = attrs.field(factory=dict)
    #: the job runs until stopped (a store): not waited for by start(block=True)
    until_stopped: bool = False
    #: the files receiving this run's standard output and error (see :mod:`.logs`)
    out: str | None = None
    err: str | None = None
    #: what ran (executable and arguments, without the run command) and the entity's own environment
    #: (never the secret one): what ``simctl rerun`` starts again after the driver is gone
    argv: list[str] = attrs.field(factory=list)
    env: dict[str, str | None] = attrs.field(factory=dict)
    #: the driver that launched it (pid, start time, host): several drivers may share an experiment, so
    #: each record names its own (empty in records of an older simctl: the manifest's ``driver`` then)
    driver: dict[str, Any] = attrs.field(factory=dict)

    @property
    def identity(self) -> Identity:
        """What tells two records apart when manifests are merged."""
        return (self.key or self.name, self.run, self.launched_at)

    @property
    def elapsed(self) -> float | None:
        """Seconds from launch to finish (or to now while it runs)."""
        if self.launched_at is None:
            return None
        return (self.finished_at or time.time()) - self.launched_at


@attrs.define
class Manifest:
    """What ``simctl status`` reads."""

    experiment: str
    exp_path: str
    launcher: str
    version: int = VERSION
    updated_at: float = 0.0
    jobs: list[JobRecord] = attrs.field(factory=list)
    #: the driver process that writes it: pid and start time (to tell whether it still runs)
    driver: dict[str, Any] = attrs.field(factory=dict)

    def latest(self) -> dict[str, JobRecord]:
        """The last launch of each job, by key."""
        return {j.key or j.name: j for j in self.jobs}

    def header(self) -> dict[str, Any]:
        """Everything but the records, as plain data (what each journal line repeats)."""
        header: dict[str, Any] = converter.unstructure(attrs.evolve(self, jobs=[]))
        return header


@attrs.define
class Position:
    """How far a reader got: the snapshot (its inode and size) and the bytes
    of the journal applied to it."""

    #: the snapshot file's identity: inode and change time in ns (an inode alone is
    #: reused by the file system as soon as a compaction frees it)
    inode: tuple[int, int]
    size: int
    offset: int


def _stamp(st: os.stat_result) -> tuple[int, int]:
    """A snapshot's identity: its inode and its ctime in ns (renaming keeps both)."""
    return (st.st_ino, st.st_ctime_ns)


def path_of(exp_path: str) -> str:
    return os.path.join(exp_path, DIRNAME, FILENAME)


def journal_of(exp_path: str) -> str:
    return os.path.join(exp_path, DIRNAME, JOURNAL)


def identity(data: dict[str, Any]) -> Identity:
    """:attr:`JobRecord.identity` of an unstructured record."""
    return (data.get("key") or data.get("name"), data.get("run"), data.get("launched_at"))


def load(exp_path: str) -> Manifest | None:
    """The manifest of the experiment at ``exp_path`` (snapshot and journal),
    or None if there is none. Needs no lock, also while a driver writes."""
    got = read(exp_path)
    return None if got is None else got[0]


def read(exp_path: str) -> tuple[Manifest, Position] | None:
    """:func:`load`, and how far it read (for a :class:`Writer` that goes on from there)."""
    with bulk.gc_paused():  # a manifest is many small objects, all kept: the collector would walk them again and again
        got = _read_raw(exp_path)
        if got is None:
            return None
        state, pos, _ = got
        manifest = _structure(state, path_of(exp_path))
    manifest.exp_path = os.path.abspath(exp_path)  # where it is now, even if the experiment was moved
    return manifest, pos


def _read_raw(exp_path: str, texts: bool = False) -> tuple[dict[str, Any], Position, dict[Identity, str] | None] | None:
    """The snapshot with the journal applied, as plain data; how far it read;
    and with ``texts``, the JSON text of each record by identity, in order.
    The snapshot and the journal are opened first and checked to belong
    together (a compaction between the two opens replaces the snapshot: then
    both are opened again)."""
    path, journal = path_of(exp_path), journal_of(exp_path)
    for _ in range(50):
        try:
            fh = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
        with fh:
            inode = _stamp(os.fstat(fh.fileno()))
            try:
                jfh = open(journal, "rb")
            except FileNotFoundError:
                jfh = None
            except OSError as exc:
                raise ConfigError(f"cannot read the manifest's journal {journal}: {exc.strerror or exc}") from None
            try:
                try:
                    same = _stamp(os.stat(path)) == inode
                except FileNotFoundError:
                    same = False
                if not same:
                    continue  # compacted meanwhile: this journal may belong to the new snapshot
                data = fh.read()
                lines = jfh.read() if jfh is not None else b""
            finally:
                if jfh is not None:
                    jfh.close()
        state = _parse_snapshot(data, path)
        jobs = state["jobs"]
        index = {identity(r): i for i, r in enumerate(jobs)}
        mirror = dict(zip(map(identity, jobs), _snapshot_texts(data, jobs))) if texts else None
        entries, used = _journal_lines(lines, journal)
        for entry in entries:
            _apply(state, index, entry)
            if mirror is not None:
                mirror.update((identity(r), json.dumps(r)) for r in entry["jobs"])
        return state, Position(inode, len(data), used), mirror
    raise ConfigError(f"the manifest {path} was replaced 50 times while being read; try again")


def _parse_snapshot(data: bytes, path: str) -> dict[str, Any]:
    try:
        state = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a simctl manifest ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("jobs", []), list):
        raise ConfigError(f"{path} is not a simctl manifest (no list of jobs)")
    _check_version(state, path)
    state.setdefault("jobs", [])
    return state


def _check_version(data: dict[str, Any], path: str) -> None:
    version = data.get("version")
    if isinstance(version, int) and version not in READABLE:
        raise ConfigError(f"{path} is a simctl manifest of version {version}, which this simctl does not know "
                          f"(it reads versions {', '.join(map(str, READABLE))}); upgrade simctl to read it")


def _journal_lines(chunk: bytes, path: str, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of a piece of journal, parsed, and the length of
    what they cover. The last line is left out if it is torn (no newline
    yet, or not JSON: a write cut short by a crash); any other line that is
    not a journal entry is a ConfigError."""
    entries: list[dict[str, Any]] = []
    pieces = chunk.split(b"\n")
    pieces.pop()  # after the last newline: empty, or a line still being written
    used = 0
    for n, piece in enumerate(pieces):
        try:
            entry = json.loads(piece)
            if not isinstance(entry, dict) or not isinstance(entry.get("jobs"), list):
                raise ValueError("not a journal entry")
        except ValueError as exc:
            if n == len(pieces) - 1:
                break  # the last line, torn
            raise ConfigError(f"{path} is not a simctl manifest journal: the line at byte {start + used} "
                              f"is not an entry ({exc}); remove the file to go on without the changes "
                              "it records") from None
        _check_version(entry, path)
        entries.append(entry)
        used += len(piece) + 1
    return entries, used


def _snapshot_texts(data: bytes, jobs: list[dict[str, Any]]) -> list[str]:
    """The JSON text of each record of a snapshot: its lines, in the layout
    :func:`_encode` writes (one record per line); encoded again otherwise."""
    if jobs:
        lines = data.decode().split("\n")
        if len(lines) == len(jobs) + 3 and lines[0].endswith('"jobs": [') and lines[-2] == "]}":
            body = lines[1:-2]
            return [t[:-1] for t in body[:-1]] + body[-1:]  # without the commas between them
    return [json.dumps(r) for r in jobs]


def _apply(state: dict[str, Any], index: dict[Identity, int], entry: dict[str, Any]) -> None:
    """One journal entry onto ``state``: its header fields replace the
    snapshot's, each of its records replaces the one with its identity."""
    jobs: list[dict[str, Any]] = state["jobs"]
    for key, value in entry.items():
        if key != "jobs":
            state[key] = value
    for rec in entry["jobs"]:
        ident = identity(rec)
        i = index.get(ident)
        if i is None:
            index[ident] = len(jobs)
            jobs.append(rec)
        else:
            jobs[i] = rec


def _structure(state: dict[str, Any], path: str) -> Manifest:
    try:
        return converter.structure(state, Manifest)
    except Exception as exc:  # valid JSON, but not a manifest (or one of a newer format)
        try:
            detail = "; ".join(cattrs.transform_error(exc)[:3])
        except Exception:
            detail = str(exc)
        raise ConfigError(f"{path} is not a simctl manifest of version {VERSION}: {detail}") from None


@contextlib.contextmanager
def locked(exp_path: str) -> Iterator[None]:
    """Hold the experiment's manifest lock (between processes and drivers)."""
    directory = os.path.join(exp_path, DIRNAME)
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, "manifest.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _encode(header: dict[str, Any], records: list[str], sep: str) -> bytes:
    """A snapshot (``sep`` a newline: one record per line) or a journal line
    (``sep`` empty) from the header and the records' JSON texts."""
    head = json.dumps(header)
    body = f",{sep}".join(records)
    return f'{head[:-1]}{", " if len(head) > 2 else ""}"jobs": [{sep}{body}{sep}]}}\n'.encode()


class Lost(Exception):
    """What this writer wrote is no longer on disk (the manifest was removed,
    or replaced by something unreadable): everything must be written again."""


class Writer:
    """One process's writes to an experiment's manifest (a controller's, or
    ``simctl status`` correcting what a dead driver left).

    :meth:`save` appends the records that changed, merged under the lock
    with what other writers appended since this one last looked; it returns
    their records, so the caller sees them too (and never overwrites them:
    a writer only ever writes records it was given).

    To compact without reading the files back, a writer keeps the JSON text
    of every record on disk (its mirror, about the size of the snapshot),
    made the first time it compacts and kept up to date by every save."""

    def __init__(self, exp_path: str, position: Position | None = None) -> None:
        self.exp_path = exp_path
        #: how far this writer has read the files (None: nothing read yet)
        self.position = position
        #: identities of the records this writer wrote: not reported back as another writer's
        self.own: set[Identity] = set()
        #: identity -> JSON text of every record on disk, in order (None until needed)
        self.mirror: dict[Identity, str] | None = None
        #: one save at a time from this process, so lines are appended in the order changes were taken
        self.lock = threading.Lock()

    def save(self, header: dict[str, Any], records: list[tuple[Identity, str]], *, replace: bool = False,
             hold_lock: bool = True) -> list[dict[str, Any]]:
        """Record ``records`` (the job records that changed, as :func:`encode`
        gives them) with ``header``; return the records other writers wrote
        meanwhile, unstructured. With ``replace``, ``records`` are
        everything: the snapshot becomes exactly them and the journal is dropped. ``hold_lock=False`` when the caller
        already holds :func:`locked`. Raises :class:`Lost` if what this
        writer wrote is gone (save everything again with ``replace``), and
        OSError if the files cannot be written."""
        header = {**header, "version": VERSION, "updated_at": time.time()}
        idents = [i for i, _ in records]
        encoded = [t for _, t in records]
        if not replace:
            self.own.update(idents)
        ctx = locked(self.exp_path) if hold_lock else contextlib.nullcontext()
        with ctx:
            foreign = [] if replace else self._catch_up()
            line = b"" if replace else _encode(header, encoded, "")
            pos = self.position
            try:
                if replace or pos is None or pos.size < SMALL or pos.offset + len(line) > pos.size:
                    if replace or pos is None:
                        self.mirror = {}
                    elif self.mirror is None:
                        got = _read_raw(self.exp_path, texts=True)  # once; then kept up to date
                        self.mirror = got[2] if got is not None else {}
                    self.mirror.update(zip(idents, encoded))  # type: ignore[union-attr]
                    self._compact(header)
                else:
                    self._append(line)
                    if self.mirror is not None:
                        self.mirror.update(zip(idents, encoded))
            except BaseException:
                self.mirror = None  # it may hold what did not reach the disk: made again when needed
                raise
            return foreign

    # -- reading what others wrote ---------------------------------------------------------

    def _catch_up(self) -> list[dict[str, Any]]:
        """Under the lock: the records other writers wrote since this one last
        looked, and the position moved past them (a torn last line of a
        writer that died is cut off)."""
        pos = self.position
        path = path_of(self.exp_path)
        try:
            inode = _stamp(os.stat(path))
        except FileNotFoundError:
            if pos is not None:
                raise Lost(f"{path} was removed") from None
            return []
        if pos is None or inode != pos.inode:  # new, or compacted by another writer: read it all
            try:
                got = _read_raw(self.exp_path)
            except ConfigError as exc:
                raise Lost(str(exc)) from None
            if got is None:  # removed since the stat
                if pos is not None:
                    raise Lost(f"{path} was removed")
                return []
            state, self.position, _ = got
            self.mirror = None
            self._cut_torn()
            return [r for r in state["jobs"] if identity(r) not in self.own]
        journal = journal_of(self.exp_path)
        try:
            with open(journal, "rb") as fh:
                fh.seek(pos.offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if not chunk:
            return []
        try:
            entries, used = _journal_lines(chunk, journal, pos.offset)
        except ConfigError as exc:
            raise Lost(str(exc)) from None
        pos.offset += used
        self._cut_torn()
        records = [r for entry in entries for r in entry["jobs"]]
        if self.mirror is not None:
            self.mirror.update((identity(r), json.dumps(r)) for r in records)
        own = self.own
        return [r for r in records if identity(r) not in own]

    def _cut_torn(self) -> None:
        """Under the lock, no writer is half-way through a line: bytes after
        the last good line were left by one that died; cut them off so the
        next line starts on a line of its own."""
        pos = self.position
        if pos is None:
            return
        journal = journal_of(self.exp_path)
        try:
            if os.path.getsize(journal) > pos.offset:
                os.truncate(journal, pos.offset)
        except FileNotFoundError:
            pass

    # -- writing -------------------------------------------------------------------------------

    def _append(self, line: bytes) -> None:
        assert self.position is not None
        fd = os.open(journal_of(self.exp_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, line)
            while written < len(line):  # a short write (a signal, a full disk...): finish the line
                written += os.write(fd, line[written:])
        finally:
            os.close(fd)
        self.position.offset += len(line)

    def _compact(self, header: dict[str, Any]) -> None:
        """Write the mirror as a new snapshot, then remove the journal."""
        assert self.mirror is not None
        data = _encode({k: v for k, v in header.items() if k != "jobs"}, list(self.mirror.values()), "\n")
        directory = os.path.join(self.exp_path, DIRNAME)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(data)
            os.replace(tmp, path_of(self.exp_path))
            inode = _stamp(os.stat(path_of(self.exp_path)))  # after the writes and the rename (its ctime)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal_of(self.exp_path))  # after the rename: see _read_raw
        self.position = Position(inode, len(data), 0)


_RECORD_FIELDS = tuple(f.name for f in attrs.fields(JobRecord))


class ManifestFile:
    """An experiment's manifest as one driver holds it: the records in memory
    (:attr:`manifest`) and the files on disk, behind one method,
    :meth:`sync`. The caller guards the records with ``lock`` (a controller
    passes its own): they are read under it and updated under it, and the
    files are written outside it, so no thread waits for the disk.

    Why files and not SQLite (``benchmarks/bench_manifest.py`` measures
    both): experiments live on shared parallel file systems (Lustre, GPFS,
    NFS), where SQLite's WAL mode does not work at all (its index is shared
    memory, so every reader and writer must be on one host, while ``simctl
    status`` runs on a login node and the driver in an allocation) and its
    rollback journal depends on POSIX byte-range locks that these systems
    implement unreliably or not at all; the snapshot and journal here need
    only ``flock`` between writers, appends of whole lines and an atomic
    rename, and a reader needs no lock at all."""

    def __init__(self, exp_path: str, experiment: str, launcher: str, lock: Any = None) -> None:
        loaded = read(exp_path)
        #: everything recorded, this writer's and others', oldest launch first
        self.manifest = loaded[0] if loaded else Manifest(experiment, exp_path, launcher)
        self.lock = lock if lock is not None else threading.RLock()
        #: one sync at a time from this process, so lines go out in the order changes were taken: a
        #: caller that picks the changed records holds it across picking them and :meth:`sync`, so that
        #: one that finds nothing left to write still waits for the write under way
        self.turn = threading.RLock()
        self._writer = Writer(exp_path, loaded[1] if loaded else None)
        self._index = {r.identity: r for r in self.manifest.jobs}

    @property
    def path(self) -> str:
        return path_of(self.manifest.exp_path)

    def add(self, record: JobRecord) -> None:
        """Take in a record this writer made (under the lock); :meth:`sync` writes it."""
        self.manifest.jobs.append(record)
        self._index[record.identity] = record

    def sync(self, changed: Iterable[JobRecord]) -> list[JobRecord]:
        """Write ``changed`` (as they are now) and take in what other writers
        (a second driver on this exp_path, ``simctl status`` after a driver
        died) saved since the last sync: a record this one holds is updated in
        place, a new one is added in launch order. Returns the new ones. Not
        to be called with the lock held. Raises OSError or SimctlError if the
        files cannot be written (nothing was taken in; sync the records again
        later). If what this writer wrote is gone from the disk (the manifest
        was removed or replaced by something unreadable), everything is
        written again."""
        with self.turn:
            with self.lock:
                records = encode(changed)
                header = self.manifest.header()
            try:
                foreign = self._writer.save(header, records)
            except Lost as exc:
                log.warning("the manifest lost what this driver wrote (%s); writing it whole again", exc)
                with self.lock:
                    everything = encode(self.manifest.jobs)
                foreign = self._writer.save(header, everything, replace=True)
            if not foreign:
                return []
            with self.lock:
                return self._merge(foreign)

    def _merge(self, foreign: list[dict[str, Any]]) -> list[JobRecord]:
        added = []
        for data in foreign:
            try:
                rec = converter.structure(data, JobRecord)
            except Exception as exc:  # another writer's bad record: keep going without it
                log.warning("ignoring a record of the manifest another writer saved: %s", exc)
                continue
            mine = self._index.get(rec.identity)
            if mine is None:
                self._index[rec.identity] = rec
                added.append(rec)
            else:
                for name in _RECORD_FIELDS:
                    setattr(mine, name, getattr(rec, name))
        if added:
            self.manifest.jobs += added
            self.manifest.jobs.sort(key=lambda r: r.launched_at or 0.0)
        return added


def latest_records(records: Iterable[JobRecord]) -> list[JobRecord]:
    """The latest run of each job (by key) among ``records``, in the order of their first launch."""
    out: dict[str, JobRecord] = {}
    for r in records:
        out[r.key or r.name] = r
    return list(out.values())


def encode(records: Iterable[JobRecord]) -> list[tuple[Identity, str]]:
    """Each record's identity and JSON text: what :meth:`Writer.save` takes.
    A copy that no longer changes with the records (made under the
    controller's lock, written outside it); no dict outlives its record's
    line, so a save of many records leaves little for the garbage collector."""
    dumps, unstructure = json.dumps, converter.unstructure
    return [(r.identity, dumps(unstructure(r))) for r in records]


def write(manifest: Manifest) -> None:
    """Replace the manifest with ``manifest``, whole (no merge, no journal)."""
    Writer(manifest.exp_path).save(manifest.header(), encode(manifest.jobs), replace=True, hold_lock=False)
