"""Host lists in the workload managers' syntax, parsed and expanded by ClusterShell.

``"nid[001-003,005],login1"`` is four compute nodes and a login node: the
bracket ranges (zero-padding kept, several dimensions such as
``"r[1-2]n[1-2]"``) are ClusterShell's :class:`~ClusterShell.NodeSet.NodeSet`
to expand, the library Slurm sites use for exactly this (``nodeset -e``). The
pieces between top-level commas keep the order they were given in (an
orchestrator puts shard ``i`` on host ``i``); one piece's range expands in
ascending order, as Slurm's ``scontrol show hostnames`` does.
"""
from __future__ import annotations

from typing import Any

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

from . import checks
from .errors import ConfigError


def _pieces(text: str) -> list[str]:
    """``"a[1,2],b"`` -> ``["a[1,2]", "b"]``: split at the commas outside brackets."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def expand(arg_name: str, value: Any, *, allow_none: bool = False) -> list[str]:
    """Host names from a host list: a str (``"n1,n2"``, ``"nid[001-003,005]"``)
    or a list whose items are names or such expressions. Each name is
    non-empty, without spaces, commas or brackets; a malformed range is a
    ConfigError naming ``arg_name``."""
    items = checks.string_list(arg_name, value, split=_pieces, items=(str,), allow_none=allow_none)
    hosts: list[str] = []
    for item in items:
        for piece in _pieces(item.strip()):
            piece = piece.strip()
            if not piece or any(c in piece for c in " \t\n\0@!&^"):
                raise ConfigError(f"{arg_name}: host names must be non-empty, without spaces or commas "
                                  f"(ranges as in nid[001-003,005]); got {checks.show(value)}")
            try:
                names = list(NodeSet(piece, resolver=RESOLVER_NOGROUP)) if "[" in piece or "]" in piece else [piece]
            except NodeSetException as exc:
                raise ConfigError(f"{arg_name}: {checks.show(piece)} is not a host list ({exc}); "
                                  f"got {checks.show(value)}") from None
            hosts.extend(str(n) for n in names)
    return hosts

