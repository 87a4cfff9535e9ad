"""`tradestack evidence ...`: the signed, chained records of a stack's drill and audit reports."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..exitcodes import ExitCode
from .edge import err, out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="Evidence: every drill and audit report kept as a record of its files' "
                                             "SHA-256, chained to the one before and signed (OpenSSH SSHSIG).")

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")
StackOpt = typer.Option("lab", "--stack", "-s", help="The stack whose records to read.")


@app.command("list")
def list_(ctx: typer.Context, stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """The stack's records, oldest first (as stored: `evidence verify` judges them).

    Example: [bold]tradestack evidence list --stack lab[/]
    """
    from ..evidence import chain, keeper

    want_json(ctx, json)
    found = chain.records(keeper.records_store(), stack)
    if json:
        print_json({"ok": True, "stack": stack, "records": [r.model_dump() for r in found]})
        return
    table = Table("#", "kind", "subject", "created", "operator", "files", title=f"evidence of {stack}")
    for r in found:
        table.add_row(str(r.seq), r.kind, escape(r.subject), r.created, escape(r.operator), str(len(r.files)))
    out.print(table)


@app.command()
def show(ctx: typer.Context, seq: int = typer.Argument(..., min=1, help="The record's number."),
         stack: str = StackOpt, json: bool = JsonOpt) -> None:
    """One record: its files and their SHA-256, the record before it, who signed it.

    Example: [bold]tradestack evidence show 3 --stack lab[/]
    """
    from ..evidence import chain, keeper

    want_json(ctx, json)
    found = {r.seq: r for r in chain.records(keeper.records_store(), stack)}
    if seq not in found:
        raise InputError(f"stack {stack} has no evidence record {seq} (it has {len(found)})")
    record = found[seq]
    if json:
        print_json({"ok": True, **record.model_dump()})
        return
    for field, value in record.model_dump(exclude={"files"}).items():
        out.print(f"{field}: {escape(str(value))}", highlight=False)
    for name, digest in sorted(record.files.items()):
        out.print(f"  {digest}  {escape(name)}", highlight=False)


@app.command()
def verify(ctx: typer.Context, stack: str = StackOpt,
           signers: Path = typer.Option(None, "--allowed-signers", help="An OpenSSH allowed-signers file (default: "
                                                                          "the operator's own evidence key)."),
           exported: Path = typer.Option(None, "--from", help="A folder `evidence export` wrote (default: the "
                                                                "records kept here)."),
           json: bool = JsonOpt) -> None:
    """Check the stack's chain: every record signed by an allowed signer, none missing (the newest too, by the
    head kept beside the signing key), none inserted or reordered, every file's bytes as recorded. Exit 0 when
    all hold, 1 naming each record that does not (no records at all is 1 too: nothing was verified).

    Example: [bold]tradestack evidence verify --stack lab --allowed-signers auditors.allowed[/]
    """
    from ..evidence import keeper

    want_json(ctx, json)
    count, problems = keeper.verify(stack, signers, exported)
    if json:
        print_json({"ok": not problems, "stack": stack, "records": count, "problems": problems})
    elif problems:
        err.print(f"[bold red]evidence of {stack}: {len(problems)} problem(s)[/] in {count} record(s)")
        for line in problems:
            err.print(f"  - {line}", highlight=False, markup=False)
    else:
        out.print(f"[bold green]evidence of {stack}: {count} record(s) verified[/]")
    if problems:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def export(ctx: typer.Context, stack: str = StackOpt,
           to: Path = typer.Option(..., "--to", help="The folder to write (created; records are never overwritten)."),
           json: bool = JsonOpt) -> None:
    """Copy the stack's records, the files they hold, the chain's head and an allowed-signers file of the
    operator's key to a folder an auditor takes away; `evidence verify --from FOLDER` and `ssh-keygen -Y verify`
    check it there.

    Example: [bold]tradestack evidence export --stack lab --to evidence-lab[/]
    """
    from ..evidence import keeper

    want_json(ctx, json)
    count = keeper.export(stack, to)
    if json:
        print_json({"ok": True, "stack": stack, "records": count, "to": str(to)})
    else:
        out.print(f"{count} record(s) of {stack} exported to {to} (verify: tradestack evidence verify --stack "
                  f"{stack} --from {to})", highlight=False)
