"""Containers: a program run inside a container image (``RunSettings(container=...)``).

The container command goes between the run command and the program, so that
``mpirun -n 2`` or ``srun`` start the container once per rank:
``mpirun -n 2 podman run ... image prog args``. The step's working directory
is bound into the container and used as its working directory (unless
``working_directory`` says otherwise), as are the ``mount`` paths; the
step's environment variables are passed in by name (their values never appear
on the command line).

Names and arguments follow SmartSim's ``smartsim.settings.containers``
(``Singularity(image, args="", mount="", working_directory="")``); simctl adds
``Apptainer`` (Singularity's new name) and ``Podman``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from . import checks
from .errors import ConfigError


def _args(value: Any) -> list[str]:
    return checks.string_list("container args", value, split=shlex.split, allow_none=True)


def _mounts(value: Any) -> list[tuple[str, str]]:
    """``mount`` as (host path, container path) pairs: a str (one path, or
    several separated by commas), a list of str, or a dict host -> container
    path (None or "" for the same path)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [p for p in value.split(",") if p]
    if isinstance(value, Mapping):
        items = [(checks.string("mount", k), checks.string("mount", v or k)) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            host, _, inside = checks.string("mount", item).partition(":")
            items.append((host, inside or host))
    else:
        raise ConfigError(f"container mount {checks.show(value)} has the wrong type; expected a str, "
                          "a list of str or a dict of host path -> container path")
    return items


class Container:
    """Base class: an image, extra arguments of the container command, paths
    to bind, and the working directory inside (default: the step's own)."""

    #: the command that runs a program in an image (``singularity``, ``podman``)
    command: ClassVar[str]

    def __init__(self, image: str, args: str | Iterable[str] = "", mount: Any = "",
                 working_directory: str = "") -> None:
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f"container image {checks.show(image)} must be a non-empty str (a path or a name)")
        self.image = image
        self.args = args
        self.mount = mount
        self.working_directory = checks.string("working_directory", working_directory or "") if working_directory \
            else ""
        self._args, self._mounts = _args(args), _mounts(mount)  # checked now, before anything is launched

    def wrap(self, argv: list[str], cwd: str, env_names: Iterable[str] = ()) -> list[str]:
        """``argv`` run inside the container from directory ``cwd``, with
        the variables ``env_names`` passed in from the launcher's environment."""
        raise NotImplementedError

    def _binds(self, cwd: str) -> tuple[list[tuple[str, str]], str]:
        """The mounts, with the working directory added when none binds it; and the working directory."""
        wd = self.working_directory or cwd
        mounts = list(self._mounts)
        if not any(inside == wd or host == wd for host, inside in mounts):
            mounts.insert(0, (cwd, wd))
        return mounts, wd

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image={self.image!r}, args={self.args!r}, mount={self.mount!r}, "
                f"working_directory={self.working_directory!r})")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    __hash__ = None  # type: ignore[assignment]


class Singularity(Container):
    """``singularity exec --pwd <wd> <args> --bind <mounts> <image> <program>``;
    Singularity passes the launcher's environment into the container itself."""

    command = "singularity"

    def wrap(self, argv: list[str], cwd: str, env_names: Iterable[str] = ()) -> list[str]:
        mounts, wd = self._binds(cwd)
        binds = ",".join(h if h == i else f"{h}:{i}" for h, i in mounts)
        return [self.command, "exec", "--pwd", wd, *self._args, "--bind", binds, self.image, *argv]


class Apptainer(Singularity):
    """Singularity's new name: ``apptainer exec ...``."""

    command = "apptainer"


class Podman(Container):
    """``podman run --rm --network=host -v <host>:<path> -w <wd> -e NAME... <args>
    <image> <program>``: the host's network (the store's address is the host's),
    the step's variables by name, and the image's own user."""

    command = "podman"

    def wrap(self, argv: list[str], cwd: str, env_names: Iterable[str] = ()) -> list[str]:
        mounts, wd = self._binds(cwd)
        out = [self.command, "run", "--rm", "--network=host"]
        for host, inside in mounts:
            out += ["-v", f"{host}:{inside}"]
        out += ["-w", wd]
        for name in sorted(set(env_names)):
            out += ["-e", name]
        return [*out, *self._args, self.image, *argv]
