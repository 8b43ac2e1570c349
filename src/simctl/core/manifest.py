"""The experiment manifest: every launch and its status, kept on disk in
``<exp_path>/.simctl/manifest.json`` and replaced atomically on each change,
so ``simctl status`` can read it while or after the driver runs."""

from __future__ import annotations

import json
import os
import tempfile
import time

import attrs
import cattrs

from .errors import ConfigError
from .serialize import converter
from .status import Status

DIRNAME = ".simctl"
FILENAME = "manifest.json"
VERSION = 1


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

    def latest(self) -> dict[str, JobRecord]:
        """The last launch of each model, by name."""
        return {j.name: j for j in self.jobs}


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
    try:
        return converter.structure(data, Manifest)
    except Exception as exc:  # valid JSON, but not a manifest (or one of a newer format)
        try:
            detail = "; ".join(cattrs.transform_error(exc)[:3])
        except Exception:
            detail = str(exc)
        raise ConfigError(f"{path} is not a simctl manifest of version {VERSION}: {detail}") from None


def save(manifest: Manifest) -> None:
    """Write the manifest atomically (temporary file, then rename)."""
    manifest.updated_at = time.time()
    directory = os.path.join(manifest.exp_path, DIRNAME)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(converter.unstructure(manifest), fh, indent=1)
        os.replace(tmp, path_of(manifest.exp_path))
    except BaseException:
        os.unlink(tmp)
        raise
