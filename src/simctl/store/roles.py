"""Who may do what in a store: its users (Redis ACL), one per role, each
with a secret generated per store.

===================  =========================================================
``simctl-admin``     the driver (``Orchestrator``'s methods, ``db.client()``,
                     ``simctl store``) and the supervisor: every command
``simctl-member``    the members (``Client()`` in a model): data commands and
                     what the client API needs, nothing that administers,
                     stops, reconfigures or copies out the server
``simctl-worker``    the inference workers beside each shard: the same rights
                     as a member, less ``RESTORE``
``simctl-replica``   a replica's link to its primary (``PSYNC``, ``REPLCONF``,
                     ``PING``), with no access to keys
``default``          disabled (off, no password): a connection that does not
                     log in can do nothing (its rules allow every command
                     only because redis 7.0 replays the append-only file
                     as this user; no connection can become it)
===================  =========================================================

What a member may not do (each refused with ``NOPERM``): ``CONFIG`` (every
subcommand: :meth:`Client.config_get` and :meth:`Client.config_set` are the
driver's), ``ACL``, ``SHUTDOWN``, ``FLUSHALL``, ``FLUSHDB`` (``flush_db`` is
the driver's), ``SAVE``, ``BGSAVE``, ``BGREWRITEAOF``, ``LASTSAVE``
(``save`` is the driver's), ``REPLICAOF``/``SLAVEOF``, ``FAILOVER``,
``SYNC``/``PSYNC``, ``DEBUG``, ``MODULE``, ``MONITOR``, ``SWAPDB``,
``MIGRATE``, ``KEYS`` (``SCAN`` is allowed), ``SORT``, ``CLIENT KILL``,
``CLIENT PAUSE`` and the other ``CLIENT`` subcommands of the ``@admin``
category, ``SCRIPT KILL``, ``SCRIPT FLUSH``, ``FUNCTION`` (loading server-side
functions), ``CLUSTER`` subcommands that change the cluster (``MEET``,
``ADDSLOTS``, ``FORGET``, ``RESET``, ``FAILOVER``, ``SETSLOT``...),
``SLOWLOG``, ``LATENCY``, ``ROLE``; every other command of the ``@admin`` and
``@dangerous`` categories too. A member keeps ``INFO``, ``CLIENT LIST`` (the
inference protocol finds its workers there), ``RESTORE`` (``copy_tensor``
across cluster slots), ``EVAL``/``EVALSHA`` (the datasets' and the workers'
scripts; the commands a script calls are checked against the caller's
rights), the cluster's read subcommands (``CLUSTER SLOTS``, ``NODES``,
``INFO``...) and ``PUBLISH``/``SUBSCRIBE`` on simctl's own channels only
(:data:`CHANNELS`: ``simctl.*``, such as the inference protocol's change
channel :data:`simctl.store.protocol.CHANGED`). Every key is theirs
(``~*``), simctl's own keys under a reserved prefix (``simctl.``,
``{simctl}``) included.

``DEBUG`` and ``MODULE`` are refused to everyone before the ACL is asked
(the server's ``enable-debug-command`` and ``enable-module-command`` stay
``no``); the ACL refuses them to members as well. A ``RESTORE`` payload from a
client is checked whole before it is loaded (``sanitize-dump-payload
clients``).

The rules are written into the server's configuration file (mode 0600), with
the passwords as SHA-256 hashes; only the replica's password is there in clear
(``masterauth``, which the server must send). The passwords travel through
environments only: a member gets its own (``SSDB_USER``, ``SSDB_PASSWORD``),
the supervisor all of them (:data:`simctl.store.contract.STORE_SECRETS`), and
hands the worker's to its workers.
"""

from __future__ import annotations

import hashlib
import secrets

import attrs

ADMIN = "simctl-admin"
MEMBER = "simctl-member"
WORKER = "simctl-worker"
REPLICA = "simctl-replica"
#: the inference protocol's change channel, :data:`simctl.store.protocol.CHANGED` (not imported from there:
#: the protocol imports redis-py, which the supervisor does without; a test checks they agree)
CHANGED = "simctl.ml.changed"
#: the channels a member or worker may publish and subscribe to: simctl's own (the change channel among them)
CHANNELS = "simctl.*"
#: every user a store has, by role
USERS = {"admin": ADMIN, "member": MEMBER, "worker": WORKER, "replica": REPLICA}

#: commands no member or worker may run, named one by one (beyond the categories below), so that
#: a server whose categories differ refuses them all the same
DENIED = ("config", "acl", "shutdown", "flushall", "flushdb", "save", "bgsave", "bgrewriteaof", "lastsave",
          "replicaof", "slaveof", "failover", "sync", "psync", "debug", "module", "monitor", "swapdb", "migrate",
          "keys", "sort", "sort_ro", "client|kill", "client|pause", "client|unpause", "client|no-evict",
          "client|unblock", "script|kill", "script|flush", "function", "slowlog", "latency", "role",
          "cluster|meet", "cluster|addslots", "cluster|addslotsrange", "cluster|delslots", "cluster|delslotsrange",
          "cluster|flushslots", "cluster|forget", "cluster|reset", "cluster|failover", "cluster|setslot",
          "cluster|replicate", "cluster|saveconfig", "cluster|bumpepoch", "cluster|set-config-epoch")
#: what a member or worker gets back after the categories @admin and @dangerous are taken away
READMITTED = ("info", "client|list")


def _data_rules(extra: tuple[str, ...] = ()) -> list[str]:
    """A member's or worker's rights: every key, simctl's channels, every
    command but those of @admin and @dangerous and :data:`DENIED`, with
    :data:`READMITTED` (and ``extra``) given back."""
    rules = ["~*", "resetchannels", f"&{CHANNELS}", "+@all", "-@admin", "-@dangerous"]
    rules += [f"+{c}" for c in READMITTED + extra]
    # a subcommand cannot be denied once its whole command is: deny the subcommands first
    rules += [f"-{c}" for c in sorted(DENIED, key=lambda c: "|" not in c)]
    return rules


#: the rights of each role (see the module docstring)
RULES: dict[str, list[str]] = {
    ADMIN: ["~*", "&*", "+@all"],
    MEMBER: _data_rules(("restore",)),
    WORKER: _data_rules(),
    REPLICA: ["resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"],
}


@attrs.frozen(repr=False)
class Secrets:
    """The password of each user of one store (never shown by ``repr``)."""

    admin: str
    member: str
    worker: str
    replica: str

    @classmethod
    def generate(cls) -> Secrets:
        """New passwords, 256 bits each."""
        return cls(*(secrets.token_urlsafe(32) for _ in range(4)))

    def __repr__(self) -> str:
        return "Secrets(...)"

    def password(self, user: str) -> str:
        """The password of ``user`` (one of :data:`USERS`' values)."""
        role = next(r for r, u in USERS.items() if u == user)
        return str(getattr(self, role))

    def encode(self) -> str:
        """The form the supervisor receives in ``SIMCTL_STORE_SECRETS``: ``role=password`` pairs, comma-separated."""
        return ",".join(f"{role}={getattr(self, role)}" for role in USERS)

    @classmethod
    def decode(cls, text: str, member: str) -> Secrets:
        """The secrets in ``text`` (see :meth:`encode`), the member's being
        ``member``; a role missing from ``text`` gets a new password (a
        colocated store's supervisor is given the member's alone: nobody else
        needs the others). ValueError for a malformed ``text``."""
        given: dict[str, str] = {}
        for item in filter(None, text.split(",")):
            role, sep, password = item.partition("=")
            if not sep or role not in USERS or not password:
                raise ValueError(f"not role=password: {role!r} (roles: {', '.join(USERS)})")
            given[role] = password
        given["member"] = member
        return cls(**{role: given.get(role) or secrets.token_urlsafe(32) for role in USERS})


def _hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def acl_directives(secrets_: Secrets) -> list[tuple[str, str | list[str]]]:
    """The server's configuration lines that set up the users: the
    ``default`` user disabled, one ``user`` line per role (its password as a
    hash), the replica's login for replication, and the sanitizing of
    clients' RESTORE payloads."""
    # default: off and without a password, so no connection is it; its rights are every command's because
    # redis 7.0 replays the append-only file as this user and checks each transaction in it (the writes of a
    # script or of the server module's commands: MULTI/EXEC) against them: with -@all it dropped every one
    lines: list[tuple[str, str | list[str]]] = [("user", ["default", "off", "resetpass", "~*", "&*", "+@all"])]
    for user, rules in RULES.items():
        lines.append(("user", [user, "on", "resetpass", _hash(secrets_.password(user)), *rules]))
    lines += [("masteruser", REPLICA), ("masterauth", secrets_.replica), ("sanitize-dump-payload", "clients")]
    return lines
