"""The typed key space (see "Keys" in :mod:`simctl.store.format`): the rules
on names, checked in the client before anything is sent, and the small Lua
scripts with which the client (and the inference worker, for its outputs)
writes, deletes, copies and renames a key only when it holds the kind of
value the operation is about, atomically, in the round trip the operation
costs anyway.

Every script answers ``SIMCTLKIND <i> <kind>`` (:data:`format.KIND_ERROR`)
when its ``i``-th key (1-based) holds another kind; :func:`kind_error` turns
that into the :class:`~simctl.store.format.KindError` naming both kinds.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from ..core.errors import ConfigError
from . import format as fmt
from .format import KIND_LUA, KindError

#: the refusal every script below answers: ``SIMCTLKIND <key index> <kind found>``
_REFUSE = "return redis.error_reply('" + fmt.KIND_ERROR + " ' .. i .. ' ' .. found)"


def _check(i: int, allowed: str) -> str:
    """Lua: refuse unless KEYS[i] is absent or of the kind ``allowed`` (an ARGV expression)."""
    return (f"do local i = {i}; local found = kind(KEYS[i])\n"
            f"if found ~= 'none' and found ~= {allowed} then {_REFUSE} end end\n")


#: KEYS[1] the key; ARGV[1] the value, ARGV[2] its magic's first 3 bytes (:data:`STEMS`): SET unless the key
#: holds another kind (the common case, a key absent or of this kind, costs one GETRANGE)
PUT = KIND_LUA + """
local m = redis.pcall('GETRANGE', KEYS[1], 0, 2)
if m ~= '' and m ~= ARGV[2] then
  local kinds = {SMT = 'tensor', SMM = 'model', SMS = 'script'}
""" + _check(1, "kinds[ARGV[2]]") + """end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
#: the first bytes of each kind's values (the stem of its magic)
STEMS = {"tensor": "SMT", "model": "SMM", "script": "SMS"}

#: KEYS[1] a temporary key holding the value (with an expiry), KEYS[2] the key; ARGV[1] the kind:
#: RENAME the temporary key onto the key unless it holds another kind (then the temporary key is deleted)
MOVE_IN = KIND_LUA + """
do local i = 2; local found = kind(KEYS[2])
if found ~= 'none' and found ~= ARGV[1] then redis.call('DEL', KEYS[1]); """ + _REFUSE + """ end end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
return 1
"""

#: KEYS[1] the key; ARGV[1] its kind: DEL unless it holds another kind; 1 if deleted, 0 if absent
DELETE = KIND_LUA + _check(1, "ARGV[1]") + "return redis.call('DEL', KEYS[1])\n"

#: KEYS[1] source, KEYS[2] destination (one slot); ARGV[1] the kind, ARGV[2] 'copy' or 'rename':
#: 0 when there is no source, 1 when done; refused when either holds another kind
TRANSFER = KIND_LUA + """
do local i = 1; local found = kind(KEYS[1])
if found == 'none' then return 0 end
if found ~= ARGV[1] then """ + _REFUSE + """ end end
""" + _check(2, "ARGV[1]") + """
if KEYS[1] == KEYS[2] then return 1 end
if ARGV[2] == 'copy' then redis.call('COPY', KEYS[1], KEYS[2], 'REPLACE')
else redis.call('RENAME', KEYS[1], KEYS[2]) end
return 1
"""

#: KEYS[1] the source; ARGV[1] its kind: {} when absent, else {DUMP of it}; refused when another kind
DUMP = KIND_LUA + """
do local i = 1; local found = kind(KEYS[1])
if found == 'none' then return {} end
if found ~= ARGV[1] then """ + _REFUSE + """ end end
return {redis.call('DUMP', KEYS[1])}
"""

#: KEYS[1] the destination; ARGV[1] the kind, ARGV[2] a DUMP: RESTORE ... REPLACE unless another kind
RESTORE = KIND_LUA + _check(1, "ARGV[1]") + "redis.call('RESTORE', KEYS[1], 0, ARGV[2], 'REPLACE')\nreturn 1\n"

#: KEYS[1]: its kind ('none' when absent)
KIND = KIND_LUA + "return kind(KEYS[1])\n"

_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (PUT, MOVE_IN, DELETE, TRANSFER, DUMP,
                                                                          RESTORE, KIND)}


#: PUT's SHA1 (a client packs its EVALSHA itself, see ClientBase._put_value)
PUT_SHA = _SHA[PUT]


def by_sha(cmd: tuple[Any, ...]) -> tuple[Any, ...]:
    """``cmd`` with an EVAL of one of the scripts above sent as EVALSHA (the server
    caches a script once it ran it; NOSCRIPT otherwise: send the EVAL)."""
    if cmd[0] == "EVAL" and cmd[1] in _SHA:
        return ("EVALSHA", _SHA[cmd[1]], *cmd[2:])
    return cmd


#: a value larger than this is SET under a temporary key and renamed, not copied into Lua (measured on redis 7.0:
#: from about 3 KiB up, copying a value into a script and out costs more than the second command)
MOVE_FROM = 2048
#: milliseconds a temporary key lives if its rename never comes (the client died between the two)
TMP_TTL_MS = 60000
_counter = itertools.count()

#: what deletes a key of each kind (the way to replace it with another kind, on purpose)
DELETE_WITH = {"tensor": "delete_tensor", "model": "delete_model", "script": "delete_script",
               "list": "delete_list", "dataset": "delete_dataset"}


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` as Redis Cluster reads it (the text between the
    first ``{`` and the first ``}`` after it, when not empty), or None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1:end] if end > start + 1 else None


def temporary_key(key: str, owner: str) -> str | None:
    """A fresh key under :data:`format.RESERVED` in ``key``'s cluster slot, for
    a value on its way to ``key`` (``owner``: the client's id); None when no
    such name can be made (a key with a ``}`` and no hash tag)."""
    tag = hash_tag(key)
    if tag is None:
        if "}" in key:
            return None
        tag = key
    return f"{fmt.RESERVED}put{{{tag}}}.{owner}.{next(_counter)}"


def check_key(key: str, kind: str, what: str) -> None:
    """ConfigError naming ``what`` when ``key`` (a tensor's, a model's, a
    script's or a list's, prefix applied) is not one a user may name."""
    if key.startswith(fmt.RESERVED):
        raise ConfigError(f"{what}: {kind} key {key[:80]!r} starts with {fmt.RESERVED!r}, the prefix of simctl's "
                          f"own keys (the inference workers' queues...); give a name that does not")
    if fmt.dataset_key_form(key):
        ds = key[1:key.index("}")]
        raise ConfigError(f"{what}: {kind} key {key[:80]!r} has the form of dataset {ds!r}'s keys ('{{F}}', "
                          f"'{{F}}.meta', '{{F}}.tensor.<t>'); use the dataset calls (get_dataset, put_dataset...) "
                          f"for a dataset, or give the {kind} another name")


def check_dataset(full: str, what: str) -> None:
    """ConfigError naming ``what`` when ``full`` (a dataset's name, prefix
    applied) may not name a dataset: it holds a brace (its keys would not share
    one cluster slot, or would take another dataset's form) or starts with
    :data:`format.RESERVED`."""
    if "{" in full or "}" in full:
        raise ConfigError(f"{what}: dataset name {full[:80]!r} holds '{{' or '}}'; a dataset's keys are "
                          f"'{{name}}', '{{name}}.meta' and '{{name}}.tensor.<t>' (one slot of a cluster), so its "
                          "name may hold neither brace")
    if full.startswith(fmt.RESERVED):
        raise ConfigError(f"{what}: dataset name {full[:80]!r} starts with {fmt.RESERVED!r}, the prefix of "
                          "simctl's own keys; give a name that does not")


def kind_error(what: str, keys: list[str], expected: str, reply: Any) -> KindError | None:
    """The KindError a script's refusal ``reply`` (an error, or its text) means
    (``keys``: the script's keys, ``expected``: the operation's kind); None
    when ``reply`` is no refusal."""
    text = str(reply)
    at = text.find(fmt.KIND_ERROR + " ")  # redis-py's pipeline puts its own words first
    if at < 0:
        return None
    _, index, found = text[at:].split(" ", 2)
    return refused(what, keys[int(index) - 1], found.split()[0], expected)


#: the words every refusal of a write to a key of another kind holds (:func:`refused`): a client reading
#: a worker's error for a run's output finds them there and raises the KindError it names
REFUSAL = "a key holds one kind of value and an operation on one kind never changes another"


def refused(what: str, key: str, found: str, expected: str, write: bool = True) -> KindError:
    """The error of operation ``what`` (about ``expected``; ``write``: one that
    would change the key) on ``key``, which holds ``found``."""
    text = f"{what}: key {key[:200]!r} holds {fmt.kind_name(found)}, not {fmt.kind_name(expected)}"
    if not write:
        return KindError(text)
    delete = DELETE_WITH.get(found)
    how = (f"{delete}() deletes it" if delete else "a Redis client's DEL deletes it")
    return KindError(f"{text}; {REFUSAL}: to replace it on purpose, delete it first ({how}), or use another name")
