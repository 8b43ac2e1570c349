"""The ``simctl`` command: ``simctl plugins list``, ``simctl status``, ``simctl stop``."""

from __future__ import annotations

import json
import os
import sys

import click

from . import SimctlError, __version__
from .core import manifest as mf
from .core import reattach
from .core.plugins import FAMILIES, PluginRecord, make_plugins
from .log import configure_logging
from .core.serialize import converter
from .core.table import HEADERS, rows


def _table(title: str, headers: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in body:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@click.group()
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


def _experiment(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """EXP_PATH must hold an experiment: checked before anything is locked or
    written there (taking the lock creates ``EXP_PATH/.simctl``)."""
    if not os.path.lexists(mf.path_of(value)):
        raise click.BadParameter(f"no simctl experiment at {value} (no {mf.path_of(value)})")
    return value


def _show(man: mf.Manifest, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(converter.unstructure(man), indent=2))
        return
    _table(f"{man.experiment} ({man.launcher}) at {man.exp_path}", HEADERS, rows(man.jobs))


@main.command()
@click.argument("exp_path", type=click.Path(exists=True, file_okay=False), callback=_experiment)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(exp_path: str, as_json: bool) -> None:
    """Show every launch of the experiment at EXP_PATH, from its manifest.

    If the driver that started the jobs is gone, the jobs it left unfinished
    are looked up (their processes, scheduler jobs and exit-status files) and
    the manifest is corrected."""
    try:
        _show(reattach.refresh(exp_path, make_plugins()), as_json)
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("exp_path", type=click.Path(exists=True, file_okay=False), callback=_experiment)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stop(exp_path: str, as_json: bool) -> None:
    """Stop every job that a driver which is gone left running at EXP_PATH."""
    try:
        man = reattach.stop_left(exp_path, make_plugins())
    except SimctlError as exc:
        raise click.ClickException(str(exc)) from None
    _show(man, as_json)
