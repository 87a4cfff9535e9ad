"""`tradestack topology ...`: validate and show topology files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.tree import Tree

from ..topology import Topology, load_topology, risk_group_index
from ..topology.riskgroups import site_groups, uplink_groups
from .edge import out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="Validate and inspect topology files.")

FileArg = typer.Argument(..., help="Topology YAML file, e.g. infra/topologies/lab.yaml.",
                         show_default=False)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def summary(t: Topology) -> dict:
    index = risk_group_index(t)
    return {"name": t.name, "sites": len(t.sites), "carriers": len(t.carriers),
            "upstreams": len(t.upstreams), "services": len(t.services), "risk_groups": len(index)}


@app.command()
def validate(ctx: typer.Context, file: Path = FileArg, json: bool = JsonOpt) -> None:
    """Check a topology file; print every problem with file:line:column.

    Example: [bold]tradestack topology validate infra/topologies/lab.yaml[/]

    Exit 0 when valid, 2 when not.
    """
    want_json(ctx, json)
    t = load_topology(file)
    s = summary(t)
    if json:
        print_json({"ok": True, "file": str(file), **s})
        return
    out.print(f"[green]valid[/]: {file}: topology [bold]{t.name}[/] with {s['sites']} sites, "
              f"{s['carriers']} carriers, {s['upstreams']} upstreams, {s['services']} services, "
              f"{s['risk_groups']} risk groups", highlight=False)


@app.command()
def show(ctx: typer.Context, file: Path = FileArg, json: bool = JsonOpt) -> None:
    """Show sites, uplinks, risk groups and service placement as tables.

    Example: [bold]tradestack topology show infra/topologies/lab.yaml[/]
    """
    want_json(ctx, json)
    t = load_topology(file)
    index = risk_group_index(t)
    if json:
        doc = t.model_dump(mode="json")
        doc["risk_groups"] = {g: {"sites": tag.sites, "uplinks": [list(u) for u in tag.uplinks],
                                  "upstreams": tag.upstreams} for g, tag in index.tags.items()}
        print_json(doc)
        return

    peak = ", ".join(f"{m} {v:g}" for m, v in t.peak.items())
    root = Tree(f"[bold]{t.name}[/]  peak: {peak}; headroom x{t.headroom:g}")
    for site in t.sites:
        node = root.add(f"[bold]{site.name}[/] ({site.role})  {', '.join(site_groups(site))}")
        for i, uplink in enumerate(site.uplinks):
            node.add(f"uplink via [cyan]{uplink.carrier}[/]  {', '.join(uplink_groups(site, i))}")
    if t.upstreams:
        up = root.add("upstreams")
        for u in t.upstreams:
            up.add(f"{u.name}  {', '.join(['upstream:' + u.name, *u.risk_groups])}")
    out.print(root)

    table = Table(title="Services", title_justify="left")
    for col in ("service", "kind", "per instance", *(s.name for s in t.sites), "requires", "upstreams"):
        table.add_column(col)
    for svc in t.services:
        kind = svc.kind + (f" ({svc.replication})" if svc.replication else "")
        cap = ", ".join(f"{m} {v:g}" for m, v in svc.capacity.items()) or "-"
        table.add_row(svc.name, kind, cap, *(str(svc.placement.get(s.name, "")) for s in t.sites),
                      ", ".join(svc.requires) or "-", ", ".join(svc.upstreams) or "-")
    out.print(table)

    groups = Table(title=f"Risk groups ({len(index)})", title_justify="left")
    groups.add_column("risk group")
    groups.add_column("takes down")
    for g, tag in index.tags.items():
        parts = [f"site {s}" for s in tag.sites] + [f"uplink {s}/{c}" for s, c in tag.uplinks]
        parts += [f"upstream {u}" for u in tag.upstreams]
        groups.add_row(g, ", ".join(parts))
    out.print(groups)
