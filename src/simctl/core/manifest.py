"""The experiment manifest: every launch and its status, kept on disk in
``<exp_path>/.simctl/manifest.json`` and replaced atomically on each change,
so ``simctl status`` can read it while or after the driver runs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from typing import Any, Iterator

import attrs
import cattrs

from .errors import ConfigError
from .serialize import converter
from .status import Status

DIRNAME = ".simctl"
FILENAME = "manifest.json"
VERSION = 2
#: versions this simctl reads (1 lacks keys, handles and the driver's identity)
READABLE = (1, 2)


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

    @property
    def identity(self) -> tuple[str, int, float | None]:
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


def path_of(exp_path: str) -> str:
    return os.path.join(exp_path, DIRNAME, FILENAME)


def load(exp_path: str) -> Manifest | None:
    """The manifest of the experiment at ``exp_path``, or None if there is none."""
    path = path_of(exp_path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"{path} is not a simctl manifest ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and version not in READABLE:
        raise ConfigError(f"{path} is a simctl manifest of version {version}, which this simctl does not know "
                          f"(it reads versions {', '.join(map(str, READABLE))}); upgrade simctl to read it")
    try:
        manifest = converter.structure(data, Manifest)
    except Exception as exc:  # valid JSON, but not a manifest (or one of a newer format)
        try:
            detail = "; ".join(cattrs.transform_error(exc)[:3])
        except Exception:
            detail = str(exc)
        raise ConfigError(f"{path} is not a simctl manifest of version {VERSION}: {detail}") from None
    manifest.exp_path = os.path.abspath(exp_path)  # where it is now, even if the experiment was moved
    return manifest


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


def save(manifest: Manifest) -> None:
    """Write the manifest atomically (temporary file, then rename), under the
    experiment's lock, merged with what another writer (a second Experiment
    object or driver on the same ``exp_path``) recorded meanwhile: their
    records are kept (and added to ``manifest``), ours replace our own."""
    with locked(manifest.exp_path):
        try:
            disk = load(manifest.exp_path)
        except ConfigError:
            disk = None  # unreadable: ours replaces it
        if disk is not None:
            ours = {r.identity for r in manifest.jobs}
            theirs = [r for r in disk.jobs if r.identity not in ours]
            if theirs:
                manifest.jobs[:0] = theirs
                manifest.jobs.sort(key=lambda r: r.launched_at or 0.0)
        write(manifest)


def write(manifest: Manifest) -> None:
    """Replace the manifest file atomically with ``manifest`` (no merge)."""
    manifest.updated_at = time.time()
    directory = os.path.join(manifest.exp_path, DIRNAME)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(converter.unstructure(manifest), fh, indent=1)
        os.replace(tmp, path_of(manifest.exp_path))
    except BaseException:
        os.unlink(tmp)
        raise
