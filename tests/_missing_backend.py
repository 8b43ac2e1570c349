"""A real backend plugin whose runtime is not installed (``NOSUCHRT``), for
the store tests' ``missing_runtime`` fixture. It lives in a module of its own
name: a plugin implementing ``simctl_register_backends`` must be importable
by the inference workers, and a class defined in a ``conftest`` cannot be
found again by that name once several conftest modules are loaded (which
one is ``conftest`` depends on the test modules collected)."""

from __future__ import annotations

from simctl import hookimpl
from simctl.core.backend import Backend


class Missing(Backend):
    name = "NOSUCHRT"
    requires = ("simctl_no_such_runtime_module",)
    install_hint = "simctl[nosuchrt]"


class MissingPlugin:
    @hookimpl
    def simctl_register_backends(self) -> list[type[Backend]]:
        return [Missing]
