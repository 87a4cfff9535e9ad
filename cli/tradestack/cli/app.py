"""Root `tradestack` command."""

from __future__ import annotations

import typer

from .. import __version__
from ..exitcodes import ExitCode
from . import audit, capacity, deploy, drill, evidence, refstack, stack, topology
from .edge import GuardedGroup, out

EXIT_CODES = "\n\n".join(f"{int(c)}  {c.name.lower().replace('_', ' ')}: {c.__doc__ or ''}".rstrip(": ")
                         for c in ExitCode)

app = typer.Typer(
    cls=GuardedGroup,
    name="tradestack",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Deploy, break and audit a broker's multi-datacenter trading stack.\n\n"
         "Example: [bold]tradestack capacity check infra/topologies/lab.yaml --depth 2[/]",
    epilog="Exit codes: 0 ok; 1 a check failed; 2 unusable input; 3 this machine lacks something "
           "(root, a program); 4 internal error (traceback in ~/.tradestack/logs); 130 interrupted.",
)
app.add_typer(topology.app, name="topology")
app.add_typer(capacity.app, name="capacity")
app.add_typer(stack.app, name="stack")
app.add_typer(refstack.app, name="refstack")
app.add_typer(drill.app, name="drill")
app.add_typer(audit.app, name="audit")
app.add_typer(evidence.app, name="evidence")
app.command("deploy")(deploy.deploy)
app.command("status")(deploy.status)


def _version(value: bool) -> None:
    if value:
        out.print(f"tradestack {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Deploy, break and audit a broker's multi-datacenter trading stack."""


def main() -> None:
    app(prog_name="tradestack")
