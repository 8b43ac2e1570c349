"""The ``simctl`` command: ``simctl plugins list``, ``simctl status``, ``simctl logs``, ``simctl stop``,
``simctl rerun``, ``simctl store``. Every command's EXP_PATH is optional: the experiment is found from the
current directory upwards (the directory holding ``.simctl/manifest.json``), as git finds its repository."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from . import SimctlError, __version__
from .core import driver as drv, logs as lg, manifest as mf, reattach
from .core.plugins import FAMILIES, PluginRecord, make_plugins
from .core.serialize import converter
from .core.status import Status
from .core.table import HEADERS, rows
from .log import configure_logging


def _table(title: str, headers: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for h in headers:
        table.add_column(h, overflow="fold", no_wrap=h == "Path")  # a path to copy whole
    for row in body:  # cells are text, never markup: "simctl[onnx]" must show as written
        table.add_row(*(escape(str(c)) for c in row))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


#: ``-h`` as well as ``--help``, on every command (inherited by the subcommands' contexts)
CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="simctl")
def main() -> None:
    """Run simulation + ML workflows on laptops and HPC machines."""
    configure_logging()


@main.group()
def plugins() -> None:
    """Installed plugins: launchers, ML backends, permutation strategies."""


def _status(r: PluginRecord) -> str:
    if r.status == "unavailable":
        return "unavailable: " + "; ".join(f"{k}: {v}" for k, v in r.unavailable.items())
    if r.status in ("broken", "disabled"):
        return f"{r.status}: {r.error}"
    return r.status


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--family", type=click.Choice(sorted(FAMILIES)), help="Only plugins of this family.")
@click.option("--strict", is_flag=True, help="Exit 1 if any plugin is broken.")
def plugins_list(as_json: bool, family: str | None, strict: bool) -> None:
    """List every plugin with what it provides, its version and status."""
    plugs = make_plugins()
    plugs.registries  # noqa: B018 - fills each record's provides/status
    # a plugin that failed to load provides nothing, so it is shown under every family
    records = [r for r in plugs.records
               if family is None or family in r.provides or r.status in ("broken", "disabled")]
    if as_json:
        data = [converter.unstructure(r) | {"families": r.families} for r in records]
        click.echo(json.dumps(data, indent=2))
    else:
        _table("simctl plugins", ("Name", "Family", "Provides", "Version", "Distribution", "Origin", "Status"),
               [(r.name, ", ".join(r.families) or "-",
                 ", ".join(n for names in r.provides.values() for n in names) or "-",
                 r.version or "-", r.distribution or "-", "built-in" if r.builtin else "external",
                 _status(r)) for r in records])
    if strict and any(r.status == "broken" for r in plugs.records):
        sys.exit(1)


def _experiment(_ctx: click.Context | None, _param: click.Parameter | None, value: str | None) -> str:
    """EXP_PATH must hold an experiment: checked before anything is locked or
    written there (taking the lock creates ``EXP_PATH/.simctl``). Without
    EXP_PATH, the experiment holding the current directory."""
    if value is None:
        found = lg.find_experiment()
        if found is None:
            raise click.UsageError(f"no simctl experiment here: neither {os.getcwd()} nor a directory above it "
                                   f"holds {os.path.join(mf.DIRNAME, mf.FILENAME)}; give EXP_PATH, or cd into "
                                   "the experiment")
        return found
    if not os.path.isdir(value):
        why = "is not a directory" if os.path.exists(value) else "does not exist"
        raise click.BadParameter(f"{value!r} {why}", param_hint="EXP_PATH")
    if not os.path.lexists(mf.path_of(value)):
        raise click.BadParameter(f"no simctl experiment at {value} (no {mf.path_of(value)})", param_hint="EXP_PATH")
    return value


def _split(args: tuple[str, ...], most: int, what: str) -> tuple[str, list[str]]:
    """(the experiment, the other arguments) of a command whose EXP_PATH is
    optional before other optional arguments: the first argument is EXP_PATH
    when there are ``most`` of them, or when it is a directory holding an
    experiment, or a directory while no experiment holds the current one
    (then it is the experiment asked for: the error says it has none)."""
    if len(args) > most:
        raise click.UsageError(f"too many arguments: expected [EXP_PATH] {what}")
    if args and (len(args) == most or os.path.lexists(mf.path_of(args[0]))
                 or (os.path.isdir(args[0]) and lg.find_experiment() is None)):
        return _experiment(None, None, args[0]), list(args[1:])
    return _experiment(None, None, None), list(args)


def _show(man: mf.Manifest, as_json: bool, records: list[mf.JobRecord] | None = None, paths: bool = False,
          note: str = "") -> None:
    if as_json:
        data = converter.unstructure(man)
        if records is not None:
            data["jobs"] = converter.unstructure(records)
        click.echo(json.dumps(data, indent=2))
        return
    headers = HEADERS + (("Path",) if paths else ())
    _table(f"{man.experiment} ({man.launcher}) at {man.exp_path}{note}", headers,
           rows(man.jobs if records is None else records, paths))


def _pick(man: mf.Manifest, every: bool, failed: bool, running: bool) -> tuple[list[mf.JobRecord], str]:
    """The records ``simctl status`` shows, and what the title says of the choice."""
    recs = man.jobs if every else _latest_and_unfinished(man.jobs)
    note = "" if every else ": latest run of each job"
    if failed:
        recs = [r for r in recs if r.status.is_terminal and r.status is not Status.COMPLETED
                and not lg.is_stopped_store(r)]
        note += ", failed only"
    if running:
        recs = [r for r in recs if not r.status.is_terminal]
        note += ", running only"
    return recs, note


def _latest_and_unfinished(jobs: list[mf.JobRecord]) -> list[mf.JobRecord]:
    """The latest run of each job, after any earlier run of it not finished
    (left by a driver that was killed: it may still run), jobs in the order
    they were first launched."""
    runs: dict[str, list[mf.JobRecord]] = {}
    for r in jobs:
        runs.setdefault(r.key or r.name, []).append(r)
    return [r for recs in runs.values() for r in recs if r is recs[-1] or not r.status.is_terminal]


@main.command()
@click.argument("exp_path", required=False, callback=_experiment)
@click.option("--all", "every", is_flag=True, help="Every run of every job (default: the latest run of each).")
@click.option("--failed", is_flag=True, help="Only jobs that ended without completing (Failed, Cancelled, Unknown).")
@click.option("--running", is_flag=True, help="Only jobs not finished yet.")
@click.option("--paths", is_flag=True, help="Add a column with each job's run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(exp_path: str, every: bool, failed: bool, running: bool, paths: bool, as_json: bool) -> None:
    """Show the jobs of the experiment at EXP_PATH (default: the one holding
    the current directory), from its manifest: the latest run of each job,
    and any earlier run not finished (a killed driver's).

    If the driver that started the jobs is gone, the jobs it left unfinished
    are looked up (their processes, scheduler jobs and exit-status files) and
    the manifest is corrected. A store stopped on purpose shows as Stopped."""
    try:
        man = reattach.refresh(exp_path, make_plugins())
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None
    recs, note = _pick(man, every, failed, running)
    writer = drv.WriterLock(exp_path).holder()
    _show(man, as_json, recs, paths, note + (f"; writer: {drv.describe(writer)}" if writer else ""))
    if not as_json and not every:
        latest = [r for r in recs if not r.until_stopped]
        report = lg.failure_report([r for r in latest if r.status is Status.FAILED], len(latest), lines=3)
        if report:
            click.echo(report, err=True)


@main.command()
@click.argument("exp_path", required=False, callback=_experiment)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stop(exp_path: str, as_json: bool) -> None:
    """Stop every job that a driver which is gone left running at EXP_PATH,
    and say which (or that nothing was running)."""
    before = mf.load(exp_path)
    # every run not finished, not only the latest of each job: a driver killed earlier may have left one going
    running = {r.identity for r in before.jobs if not r.status.is_terminal} if before else set()
    try:
        man = reattach.stop_left(exp_path, make_plugins())
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None
    stopped = [r for r in man.jobs if r.identity in running]
    if as_json:
        _show(man, True, stopped)
    elif not stopped:
        click.echo(f"nothing to stop: no job of {man.experiment} at {man.exp_path} was running")
    else:
        _show(man, False, stopped, note=f": stopped {len(stopped)} job(s)")
        click.echo(f"stopped {len(stopped)} job(s): {', '.join(r.key or r.name for r in stopped)}")


@main.command(name="logs")
@click.argument("args", nargs=-1, metavar="[EXP_PATH] [ENTITY_OR_MEMBER]")
@click.option("--err", is_flag=True, help="The error output (.err) rather than the output (.out).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is written until the job(s) end.")
def logs_cmd(args: tuple[str, ...], err: bool, follow: bool) -> None:
    """Print the output of the latest run of a job (a model, a member such as
    sweep_3 or sweep/sweep_3), of each member of an ensemble, or, with no
    name, of every job of the experiment at EXP_PATH (default: the one holding
    the current directory)."""
    exp_path, rest = _split(args, 2, "[ENTITY_OR_MEMBER]")
    man = mf.load(exp_path)
    assert man is not None  # _experiment checked it
    name = rest[0] if rest else None
    recs = lg.select(man.latest(), name)
    if not recs:
        known = sorted({r.key or r.name for r in man.jobs} | {r.ensemble for r in man.jobs if r.ensemble})
        raise click.ClickException(f"no job or entity named {name!r} in {exp_path}; it has: "
                                   f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''}")
    if not follow:
        click.echo(lg.read_logs(recs, err), nl=False)
        return
    _follow(exp_path, recs, err)


def _follow(exp_path: str, recs: list[mf.JobRecord], err: bool) -> None:
    """Print the files of ``recs`` as they grow, until every one of their jobs
    has ended (or Ctrl-C); after the driver is gone, the jobs are looked up as
    ``simctl status`` does."""
    import time

    offsets: dict[str, int] = {}
    paths = [p for p in (lg.out_path(r, err) for r in recs) if p]
    several = len(paths) > 1
    plugins = make_plugins()
    try:
        while True:
            man = mf.load(exp_path) or mf.Manifest("", exp_path, "")
            if not reattach.driver_alive(man):  # nobody updates the manifest: look at the jobs themselves
                man = reattach.refresh(exp_path, plugins)
            latest = man.latest()
            ended = all(latest.get(r.key or r.name, r).status.is_terminal for r in recs)
            for path in paths:
                try:
                    with open(path, "rb") as fh:
                        fh.seek(offsets.get(path, 0))
                        chunk = fh.read()
                except OSError:
                    continue
                if chunk:
                    offsets[path] = offsets.get(path, 0) + len(chunk)
                    text = chunk.decode("utf-8", "replace")
                    click.echo(f"==> {path} <==\n{text}" if several else text, nl=False)
            if ended:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


@main.command()
@click.argument("exp_path", required=False, callback=_experiment)
@click.option("--failed", is_flag=True, required=True,
              help="Re-run the jobs whose latest run ended without completing (required: the only choice now).")
def rerun(exp_path: str, failed: bool) -> None:
    """Re-run, in a new driver (this command, which waits for them), the jobs
    of the experiment at EXP_PATH whose latest run ended without completing:
    each in its own run directory, with the command and environment its
    last run recorded. Its output files are kept as <name>.out.<run>."""
    from .workflow.rerun import rerun_failed  # the workflow layer: start-up cost of the other commands

    try:
        code = rerun_failed(exp_path, make_plugins())
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


# -- simctl store ---------------------------------------------------------------------------------

#: seconds to wait for a shard to accept the connection before saying the store does not run
STORE_CONNECT_TIMEOUT = 3.0
#: seconds ``simctl store`` waits for any answer of the store by default (``--timeout``)
STORE_TIMEOUT = 10.0


@main.group()
def store() -> None:
    """Look inside an experiment's feature store while it runs.

    The store's address and password are the ones its orchestrator recorded
    (``<orchestrator dir>/store.json``, mode 0600), found through the
    experiment's manifest."""


def _store(exp_path: str, db: str | None) -> tuple[Any, list[mf.JobRecord]]:
    """(the orchestrator, attached through what it recorded; the shards'
    manifest records) of the experiment's store ``db`` (default: its only
    one). ClickException, saying which, when there is none, several, or it
    does not run."""
    from .store.orchestrator import Orchestrator, StoreFileUnreadable, StoreNotReady  # redis-py: start-up cost

    man = mf.load(exp_path)
    if man is None:
        raise click.ClickException(f"no simctl experiment at {exp_path} (no {mf.path_of(exp_path)})")
    stores: dict[str, list[mf.JobRecord]] = {}
    for rec in man.latest().values():
        if rec.entity_type == "Orchestrator":
            stores.setdefault((rec.key or rec.name).partition("/")[0], []).append(rec)
    if not stores:
        raise click.ClickException(f"the experiment at {exp_path} has no feature store: its manifest records no "
                                   "orchestrator (a driver records one with exp.start(exp.create_database(...)))")
    names = ", ".join(sorted(stores))
    if db is None:
        if len(stores) > 1:
            raise click.ClickException(f"the experiment at {exp_path} has {len(stores)} stores ({names}); choose "
                                       "one with --db NAME")
        db = next(iter(stores))
    elif db not in stores:
        raise click.ClickException(f"--db: the experiment at {exp_path} has no store named {db!r}; it has: {names}")
    records = stores[db]
    states = ", ".join(sorted({str(r.status) for r in records}))
    if all(r.status.is_terminal for r in records):
        raise click.ClickException(f"store {db!r} of the experiment at {exp_path} is not running (its shards are "
                                   f"recorded {states}); start it again to look inside")
    try:
        return Orchestrator.attach(records[0].path or ""), records
    except StoreNotReady as exc:
        raise click.ClickException(f"store {db!r} is not running or not ready yet (recorded {states}): it writes "
                                   f"{exc.path} once ready, and there is none") from None
    except StoreFileUnreadable as exc:
        raise click.ClickException(f"cannot read store {db!r}'s address and password from {exc.path}: "
                                   f"{exc.reason}") from None
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None


_TIMEOUT_OPTION = click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=STORE_TIMEOUT, show_default=True,
    help="Seconds to wait for any answer of the store (a stopped or hung server is then an error).")


def _no_answer(name: str, exc: Exception, timeout: float) -> str:
    """What ``simctl store`` says of redis-py's error ``exc``."""
    import redis  # start-up cost

    if isinstance(exc, redis.TimeoutError):
        return (f"store {name!r} did not answer within {timeout:g} s (a stopped, hung or overloaded server; "
                f"--timeout sets the wait): {exc}")
    return f"store {name!r}: {exc}"


@contextlib.contextmanager
def _shards(exp_path: str, db: str | None, timeout: float) -> Iterator[tuple[str, list[Any]]]:
    """(name, a redis-py client per shard, waiting ``timeout`` seconds for any
    answer) of a store that answers, closed at the end of the ``with``."""
    import redis  # start-up cost

    orchestrator, records = _store(exp_path, db)
    name = orchestrator.name
    states = ", ".join(sorted({str(r.status) for r in records}))
    with orchestrator.shards(min(STORE_CONNECT_TIMEOUT, timeout), timeout) as shards:
        for address, r in zip(orchestrator.get_address(), shards):
            try:
                r.ping()
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # an AuthenticationError too
                if isinstance(exc, redis.AuthenticationError):
                    why = "refused the password the store recorded (another server took its port?)"
                elif isinstance(exc, redis.TimeoutError):
                    why = (f"did not answer within {timeout:g} s (a stopped, hung or overloaded server; --timeout "
                           "sets the wait)")
                else:
                    why = (f"does not answer (its shards are recorded {states}; `simctl status {exp_path}` "
                           "updates that)")
                raise click.ClickException(f"store {name!r} is not running: {address} {why}: {exc}") from None
        yield name, shards


def _kind(key: bytes, rtype: str, head: Any, size: Any) -> dict[str, Any]:
    """What ``simctl store ls`` shows of one key (``head``: the first bytes of a
    string, ``size``: its length; for a list or hash, its number of entries)."""
    from .store import format as fmt  # numpy: start-up cost

    row: dict[str, Any] = {"key": key.decode("utf-8", "backslashreplace"), "kind": rtype, "dtype": None,
                           "shape": None, "size": None, "details": ""}
    if rtype == "string":
        row["size"] = int(size)
        if fmt.kind_of_value(head) in ("model", "script"):
            row["kind"] = fmt.kind_of_value(head)
        elif head.startswith(fmt.TENSOR_MAGIC_STEM):
            row["kind"] = "tensor"
            try:
                header = fmt.parse_header(head)
                row["dtype"], row["shape"] = str(header.dtype), list(header.shape)
            except fmt.FormatError as exc:
                row["details"] = f"unreadable: {exc}"
        else:
            try:
                row["details"] = "tensors: " + ", ".join(fmt.parse_dataset_ack(head))
                row["kind"] = "dataset"
            except fmt.FormatError:
                pass
    elif rtype == "list":
        row["details"] = f"{size} entr{'y' if size == 1 else 'ies'}"
    elif rtype == "hash":
        row["details"] = f"{size} field{'' if size == 1 else 's'}"
        if head:  # a dataset's metadata in format 2, which lists its tensors
            try:
                row["details"] = "tensors: " + ", ".join(fmt.parse_tensor_names(head))
                row["kind"] = "dataset"
            except fmt.FormatError:
                pass
        if row["kind"] == "hash" and key.startswith(b"{") and key.endswith(b"}.meta"):
            row["kind"] = "dataset metadata"
    return row


def _store_keys(shard: Any, pattern: str) -> list[dict[str, Any]]:
    """Every key of ``shard`` matching ``pattern``, described by :func:`_kind`."""
    from .store import format as fmt  # numpy: start-up cost

    keys = list(shard.scan_iter(match=pattern, count=1000))
    rows = []
    for i in range(0, len(keys), 500):
        batch = keys[i:i + 500]
        pipe = shard.pipeline(transaction=False)
        for k in batch:
            pipe.type(k)
        types = [t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute()]
        pipe = shard.pipeline(transaction=False)
        for k, t in zip(batch, types):
            if t == "string":
                pipe.strlen(k)
                pipe.getrange(k, 0, fmt.MAX_HEADER_BYTES - 1)
            elif t in ("list", "hash"):
                (pipe.llen if t == "list" else pipe.hlen)(k)
        answers = iter(pipe.execute())
        for k, t in zip(batch, types):
            if t == "none":  # deleted meanwhile
                continue
            size = next(answers) if t in ("string", "list", "hash") else None
            head = next(answers) if t == "string" else b""
            if t == "string" and head.startswith(b'{"simctl"') and size is not None and size > len(head):
                head = shard.get(k) or b""  # a dataset acknowledgement longer than the first bytes
            if t == "hash" and k.endswith(b".meta") and fmt.dataset_key_form(k.decode("utf-8", "replace")):
                head = shard.hget(k, fmt.DATASET_TENSOR_NAMES) or b""  # a dataset (format 2): its tensor names
            rows.append(_kind(k, t, head, size))
    return rows


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@store.command("ls")
@click.argument("args", nargs=-1, metavar="[EXP_PATH] [PATTERN]")
@click.option("--db", help="The store's name (db_identifier), when the experiment has several.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_TIMEOUT_OPTION
def store_ls(args: tuple[str, ...], db: str | None, as_json: bool, timeout: float) -> None:
    """List the keys of the experiment's store (matching PATTERN, a Redis glob
    such as 'producer_0.*'; default all) with their kind, dtype, shape and size
    in bytes. EXP_PATH defaults to the experiment holding the current directory."""
    import redis  # start-up cost

    exp_path, rest = _split(args, 2, "[PATTERN]")
    pattern = rest[0] if rest else "*"
    with _shards(exp_path, db, timeout) as (name, shards):
        try:
            rows = sorted((row for shard in shards for row in _store_keys(shard, pattern)), key=lambda r: r["key"])
        except redis.RedisError as exc:
            raise click.ClickException(_no_answer(name, exc, timeout)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(f"store {name} of {os.path.abspath(exp_path)}: {len(rows)} key(s) matching {pattern!r}",
           ("Key", "Kind", "Dtype", "Shape", "Size", "Details"),
           [(r["key"], r["kind"], r["dtype"] or "-", "-" if r["shape"] is None else str(tuple(r["shape"])),
             _size(r["size"]), r["details"]) for r in rows])


@store.command("get")
@click.argument("args", nargs=-1, required=True, metavar="[EXP_PATH] KEY")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The .npy file to write ('-': standard output).")
@click.option("--db", help="The store's name (db_identifier), when the experiment has several.")
@_TIMEOUT_OPTION
def store_get(args: tuple[str, ...], output: str, db: str | None, timeout: float) -> None:
    """Write the tensor stored under KEY (the full key, prefix included, as
    `simctl store ls` shows it) to a .npy file. EXP_PATH defaults to the
    experiment holding the current directory."""
    if len(args) == 1 and os.path.lexists(mf.path_of(args[0])):
        raise click.UsageError("missing KEY: expected [EXP_PATH] KEY")
    exp_path, rest = _split(args, 2, "KEY")
    key = rest[0]
    import numpy as np
    import redis

    from .store import format as fmt  # numpy: start-up cost

    value = rtype = names = None
    with _shards(exp_path, db, timeout) as (name, shards):
        try:
            for shard in shards:  # in a cluster, the shard that holds the key's slot answers
                try:
                    rtype = shard.type(key).decode()
                except redis.exceptions.AskError:  # MOVED: another shard holds it
                    continue
                value = shard.get(key) if rtype == "string" else None
                names = shard.hget(key, fmt.DATASET_TENSOR_NAMES) if rtype == "hash" else None
                break
        except redis.RedisError as exc:
            raise click.ClickException(_no_answer(name, exc, timeout)) from None
    if rtype in (None, "none"):
        raise click.ClickException(f"store {name!r} has no key {key!r} (keys are listed by `simctl store ls "
                                   f"{exp_path}`; a prefixed entity's keys start with its name and a dot)")
    if value is None and names is not None and key.endswith(".meta"):  # a dataset (format 2)
        tensors = fmt.parse_tensor_names(names)
        hint = f"; get one of its tensors, e.g. '{key[:-len('meta')]}{tensors[0]}'" if tensors else ""
        raise click.ClickException(f"key {key!r} of store {name!r} is a dataset (tensors: {', '.join(tensors)})"
                                   f"{hint}")
    if value is None:
        raise click.ClickException(f"key {key!r} of store {name!r} holds a Redis {rtype}, not a tensor")
    found = fmt.kind_of_value(value)
    if found in ("model", "script"):
        raise click.ClickException(f"key {key!r} of store {name!r} holds {fmt.kind_name(found)}, not a tensor "
                                   f"(Client.get_{found} reads it)")
    try:
        array = fmt.decode_tensor(value)
    except fmt.FormatError as exc:
        try:
            tensors = fmt.parse_dataset_ack(value)
        except fmt.FormatError:
            raise click.ClickException(f"key {key!r} of store {name!r}: {exc}") from None
        hint = f"; get one of its tensors, e.g. '{key}.tensor.{tensors[0]}'" if tensors else ""
        raise click.ClickException(f"key {key!r} of store {name!r} is a dataset (tensors: {', '.join(tensors)})"
                                   f"{hint}") from None
    if output == "-":
        np.save(sys.stdout.buffer, array, allow_pickle=False)
        return
    try:
        with open(output, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    except OSError as exc:
        raise click.ClickException(f"-o: cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"{key}: {array.dtype} {array.shape} -> {output}")
