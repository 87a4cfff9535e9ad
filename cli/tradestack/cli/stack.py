"""`tradestack stack ...`: a stack on its substrate, managed by Pulumi (preview, up, refresh, destroy, outputs)."""

from __future__ import annotations

import dataclasses
import json as jsonlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..exitcodes import ExitCode
from .edge import err, out, print_json, want_json

if TYPE_CHECKING:  # Pulumi (and gRPC) load only when a stack command runs, not for every CLI call
    from ..adapters.pulumi import OpResult
    from ..substrates.base import StackLifecycle


def _open(name: str, topology: Path | None = None, host_settings: dict[str, str | None] | None = None,
          kind: str | None = None, hosts: Path | None = None, machines: bool | None = None) -> "StackLifecycle":
    """The stack; host settings given on the command line replace only those named, keeping the rest."""
    from ..errors import InputError
    from ..hostsettings import HostSettings
    from ..substrates import registry

    if hosts is not None and kind not in (None, "hosts"):
        raise InputError(f"--hosts is for --substrate hosts, not {kind}")
    if hosts is not None and topology is not None:
        raise InputError("give --hosts FILE (it names its topology) or --topology FILE, not both")
    kind = "hosts" if hosts is not None else kind
    source = hosts if hosts is not None else topology
    given = {k: v for k, v in (host_settings or {}).items() if v is not None}
    if not given:
        return registry.lifecycle(name, kind=kind, source=source, machines=machines)
    current = registry.lifecycle(name, kind=kind)
    base = current.host_settings if current.exists() else HostSettings()
    return registry.lifecycle(name, kind=kind, source=source, host_settings=dataclasses.replace(base, **given),
                              machines=machines)

app = typer.Typer(no_args_is_help=True, help="Manage a stack on its substrate as a Pulumi stack (the lab needs root).")

StackOpt = typer.Option("lab", "--stack", "-s", help="Stack name: 1-8 lower-case letters/digits.")
TopologyOpt = typer.Option(None, "--topology", "-t", help="Topology file (needed to create the stack).")
YesOpt = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
SubstrateOpt = typer.Option(None, "--substrate", help="Where the stack runs, for a new stack: lab "
                            "(network namespaces on this machine, the default), hosts (real machines over SSH, "
                            "from --hosts FILE) or kubernetes (the lab's hosts plus a Kubernetes cluster per site "
                            "running the gateways; `deploy` applies them). An existing stack keeps its own.")
HostsOpt = typer.Option(None, "--hosts", help="Hosts file (substrate hosts): the machines, their roles, SSH access "
                        "and pinned host keys; it names its topology.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON summary on stdout.")


class _EventProgress:
    """Turns the Automation API event stream into a live bar: resources done/total, current operation."""

    def __init__(self, progress: Progress, task: Any):
        self.progress, self.task, self.done, self.errors = progress, task, 0, []

    def __call__(self, event: Any) -> None:
        pre = getattr(event, "resource_pre_event", None)
        if pre is not None:
            meta = pre.metadata
            self.progress.update(self.task, description=f"{meta.op.value if hasattr(meta.op, 'value') else meta.op} "
                                                        f"{meta.urn.split('::')[-1]}")
        if getattr(event, "res_outputs_event", None) is not None:
            self.done += 1
            self.progress.update(self.task, completed=self.done)
        diag = getattr(event, "diagnostic_event", None)
        if diag is not None and diag.severity == "error":
            self.errors.append(diag.message.strip())


def _run(label: str, total: int | None, op: Any) -> Any:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        return op(_EventProgress(progress, task))


def _confirm(stack: StackLifecycle, action: str, yes: bool) -> None:
    if stack.disposable or yes:
        return
    if not typer.confirm(f"{action} stack {stack.name!r}?"):
        raise typer.Exit(ExitCode.FAILED)


def _summary(result: OpResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ok": True, "operation": result.kind, "changes": result.changes, "changed": result.changed,
            **(extra or {})}


def _render(result: OpResult) -> None:
    parts = ", ".join(f"{n} {op}" for op, n in sorted(result.changes.items())) or "no resources"
    out.print(f"[bold]{result.kind}[/]: {parts}", highlight=False)


@app.command()
def preview(ctx: typer.Context, stack: str = StackOpt, topology: Path = TopologyOpt, hosts: Path = HostsOpt,
            json: bool = JsonOpt) -> None:
    """Show what `up` would change, without changing anything.

    Example: [bold]sudo tradestack stack preview --topology infra/topologies/lab.yaml[/]
    """
    want_json(ctx, json)
    lab = _open(stack, topology, hosts=hosts)
    result = _run("previewing", lab.expected_resources(), lab.preview)
    print_json(_summary(result)) if json else _render(result)


@app.command()
def up(ctx: typer.Context, stack: str = StackOpt, topology: Path = TopologyOpt, yes: bool = YesOpt,
       service_user: str = typer.Option(None, "--service-user", help="User the trading services run as "
                                        "(a stack setting; default tradestack)."),
       service_group: str = typer.Option(None, "--service-group", help="Their group (default tradestack)."),
       state_root: str = typer.Option(None, "--state-root", help="Root of per-host state on the hosts "
                                      "(default /var/lib/tradestack)."),
       software_root: str = typer.Option(None, "--software-root", help="Root of per-stack software on the hosts "
                                         "(default /opt/tradestack)."),
       substrate: str = SubstrateOpt, hosts: Path = HostsOpt,
       machines: Optional[bool] = typer.Option(None, "--machines/--namespaces", help="A lab's hosts as booted Debian "
                                               "machines (systemd, their own disks; root, systemd-nspawn) or as "
                                               "network namespaces (the default); kept as a stack setting. Deploy "
                                               "onto machines through a hosts stack: `stack hosts-file`."),
       json: bool = JsonOpt) -> None:
    """Create or update a stack: the lab network for a topology (root), or real hosts registered over SSH from a
    hosts file (each host's key checked against the pinned one, what drills need prepared); then write the
    inventory, SSH key and known_hosts.

    The host settings (--service-user, --service-group, --state-root, --software-root) are kept in the
    stack's configuration and used by every later deploy, drill and audit of the stack; set them when the
    stack is created (a deploy does not remove what it created under earlier names).

    Examples: [bold]sudo tradestack stack up --topology infra/topologies/lab.yaml[/]
              [bold]tradestack stack up --stack staging --substrate hosts --hosts infra/hosts/example.yaml[/]
              [bold]sudo tradestack stack up --stack k8s --substrate kubernetes --topology infra/topologies/lab.yaml[/]
              [bold]sudo tradestack stack up --stack metal --topology infra/topologies/lab.yaml --machines[/]
    """
    want_json(ctx, json)
    from ..substrates import registry

    lab = _open(stack, topology, {"service_user": service_user, "service_group": service_group,
                                  "state_root": state_root, "software_root": software_root}, kind=substrate,
                hosts=hosts, machines=machines)
    _confirm(lab, "Update", yes)
    result, files = _run("bringing the stack up", lab.expected_resources(), lab.up)
    registry.record_kind(stack, ("hosts" if hosts is not None else substrate) or registry.kind_of(stack))
    access = {"inventory": str(files.inventory), "private_key": str(files.private_key),
              "known_hosts": str(files.known_hosts)}
    if json:
        print_json(_summary(result, {"outputs": result.outputs, "files": access}))
        return
    _render(result)
    out.print(f"inventory: {files.inventory}\nssh key:   {files.private_key}\nknown_hosts: {files.known_hosts}",
              highlight=False)


@app.command()
def refresh(ctx: typer.Context, stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """Compare the stack's state with the machine; report drift (e.g. a namespace deleted by hand).

    Example: [bold]sudo tradestack stack refresh --stack lab[/]
    """
    want_json(ctx, json)
    lab = _open(stack)
    result = _run("refreshing", None, lab.refresh)
    print_json(_summary(result)) if json else _render(result)


@app.command()
def destroy(ctx: typer.Context, stack: str = StackOpt, yes: bool = YesOpt, json: bool = JsonOpt) -> None:
    """Delete everything the stack created: namespaces, links, bridges, nft tables, daemons.

    Example: [bold]sudo tradestack stack destroy --stack lab[/]
    """
    want_json(ctx, json)
    lab = _open(stack)
    _confirm(lab, "Destroy", yes)
    result = _run("destroying", None, lab.destroy)
    left = lab.leftovers()
    if json:
        print_json(_summary(result, {"leftovers": left}))
    else:
        _render(result)
        if left:
            err.print(f"[yellow]left behind[/]: {', '.join(left)}")
    if left:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def outputs(ctx: typer.Context, stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """Print the stack's outputs (inventory, fault map, prefixes); secrets are not shown.

    Example: [bold]tradestack stack outputs --json | jq .fault_map[/]
    """
    want_json(ctx, json)
    outs = _open(stack).outputs()
    if json:
        print_json(outs)
        return
    for key, value in outs.items():
        text = value if isinstance(value, str) else jsonlib.dumps(value, indent=2)
        out.print(f"[bold]{key}[/]:\n{text}", highlight=False)


@app.command()
def config(ctx: typer.Context, key: str = typer.Argument(None, help="A drill policy setting: tradestack:allowDrills, "
                                                           "tradestack:changeWindows or tradestack:blastRadius."),
           value: str = typer.Argument(None, help="Its new value (omit to show the stack's settings)."),
           stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """Show the stack's plain settings, or set one of its drill policy settings (checked before it is written).

    Examples: [bold]tradestack stack config --stack staging tradestack:allowDrills true[/]
              [bold]tradestack stack config --stack staging tradestack:changeWindows "Sat,Sun 02:00-06:00 UTC"[/]
              [bold]tradestack stack config --stack staging tradestack:blastRadius hosts=2,sites=1[/]
    """
    from ..drills.policy import KEYS, DrillPolicy
    from ..errors import InputError

    want_json(ctx, json)
    managed = _open(stack)
    if key is not None:
        if key not in KEYS:
            raise InputError(f"{key!r} is not a setting this command changes; it sets {', '.join(KEYS)}")
        if value is None:
            raise InputError(f"give a value for {key}")
        DrillPolicy.from_config({**managed.config(), key: value})  # refuse an unreadable value before writing it
        managed.set_config(key, value)
    settings = managed.config()
    if json:
        print_json({"ok": True, "stack": stack, "config": settings})
        return
    for k, v in sorted(settings.items()):
        out.print(f"{k}: {v}", highlight=False, markup=False)


@app.command()
def secret(ctx: typer.Context, name: str = typer.Argument(..., help="dbSuperuserPassword, dbReplicationPassword or "
                                                                   "dbAppPassword."),
           stack: str = StackOpt,
           show: bool = typer.Option(False, "--show", help="Print the secret's value on stdout instead (to hand it "
                                                           "over to the operator of another stack of the same hosts)."),
           json: bool = JsonOpt) -> None:
    """Set (or rotate) one of the stack's deploy secrets from standard input, never from the command line (it
    would show in the process list and the shell's history). Kept encrypted in the stack; the next deploy uses
    it. Use it to adopt hosts whose database was deployed with secrets of its own; `--show` prints the value the
    stack holds, for exactly that hand-over.

    Example: [bold]printf %s "$PASSWORD" | tradestack stack secret dbAppPassword --stack staging[/]
    """
    import sys

    from ..deploy.variables import SECRET_NAMES
    from ..errors import InputError

    want_json(ctx, json)
    if name not in SECRET_NAMES:
        raise InputError(f"{name!r} is not a deploy secret; they are {', '.join(SECRET_NAMES)}")
    if show:
        from ..substrates import registry

        value = registry.open_stack(stack).secrets([name])[name]
        if json:
            print_json({"ok": True, "stack": stack, "secret": name, "value": value})
        else:
            sys.stdout.write(value)
        return
    if sys.stdin.isatty():
        raise InputError(f"give {name} on standard input, e.g. printf %s \"$VALUE\" | tradestack stack secret {name}")
    value = sys.stdin.read().rstrip("\n")
    if not value:
        raise InputError(f"standard input held no value for {name}")
    _open(stack).set_secret(name, value)
    if json:
        print_json({"ok": True, "stack": stack, "secret": name})
        return
    out.print(f"{name} set for stack {stack}; the next deploy uses it", highlight=False)


@app.command()
def power(ctx: typer.Context,
          host: str = typer.Argument(..., help="The machine, by its name in the stack (as `status` lists it)."),
          action: str = typer.Argument("status", help="off | on | status"),
          stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """Switch a machine of a lab of machines off or on, or say whether it is on, as a BMC would (root).

    Off cuts it at once: its LAN port dark, every process gone, no shutdown. On boots it from its own disk and
    returns once systemd is up; nothing is deployed. The hosts file of a lab of machines names these commands as
    its power switch, so drills through hosts lose power for real.

    Example: [bold]sudo tradestack stack power lab-hk1-orderdb-1 off --stack lab[/]
    """
    from ..substrates import registry

    want_json(ctx, json)
    state = registry.power(stack, host, action)
    if json:
        print_json({"ok": True, "stack": stack, "host": host, "power": state})
        return
    out.print(f"{host}: power {state}", highlight=False)


@app.command("hosts-file")
def hosts_file(ctx: typer.Context, key: Path = typer.Option(..., "--key", help="The private key the hosts file "
                                                                             "names for logging in (a copy of the stack's)."),
               out_file: Path = typer.Option(..., "--out", help="Where to write the hosts file."),
               stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """Write a hosts file that describes a lab stack's machines as an estate reached over SSH (management
    addresses, pinned host keys, each edge router's uplinks): to try `stack up --substrate hosts` on the lab, as
    docs/adopting-an-estate.md does. The key named must be a copy of the lab's (`--key` is where it will be).

    Example: [bold]sudo tradestack stack hosts-file --stack lab --key /home/sre/estate/id_ed25519 --out hosts.yaml[/]
    """
    import yaml

    from ..substrates import registry

    want_json(ctx, json)
    document = registry.hosts_file(stack, key)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(yaml.safe_dump(document, sort_keys=False))
    if json:
        print_json({"ok": True, "stack": stack, "hosts_file": str(out_file), "hosts": len(document["hosts"])})
        return
    out.print(f"{out_file}: {len(document['hosts'])} hosts in {len(document['sites'])} sites of stack {stack}",
              highlight=False)
