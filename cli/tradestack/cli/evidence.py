"""`tradestack evidence ...`: the signed, chained records of a stack's drill and audit reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
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
    found = chain.records(keeper.records_store(stack), stack)
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
    found = {r.seq: r for r in chain.records(keeper.records_store(stack), stack)}
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


@app.command()
def store(ctx: typer.Context,
          url: str = typer.Argument(None, help="s3://BUCKET[/PREFIX] (a bucket with Object Lock), or `local`; "
                                               "without it: say where the stack's evidence goes now."),
          stack: str = StackOpt,
          endpoint: str = typer.Option(None, "--endpoint", help="The S3 server's URL, when it is not AWS's."),
          retention: str = typer.Option(None, "--retention", help="How long each record stays locked: 30s, 90d, "
                                                                  "7y (default 5y)."),
          json: bool = JsonOpt) -> None:
    """Where the stack's evidence is kept from now on: the local directory, or an S3 bucket with Object Lock whose
    versions are locked in compliance mode for the stack's retention (credentials: the usual AWS variables or
    ~/.aws). The bucket is checked first; records kept before stay where they were.

    Example: [bold]tradestack evidence store s3://broker-evidence/tradestack --stack lab --retention 7y[/]
    """
    from ..evidence import keeper

    want_json(ctx, json)
    if url is not None:
        kept = keeper.use_store(stack, None if url == "local" else url, endpoint, retention)
    else:
        kept = keeper.records_store(stack)
    setting = keeper.store_setting(stack) or {}
    if json:
        print_json({"ok": True, "stack": stack, "store": kept.describe(),
                    "retention": setting.get("retention") or ("5y" if setting else None)})
    else:
        out.print(f"evidence of {stack}: {kept.describe()}"
                  + (f", each record locked for {setting.get('retention') or '5y'}" if setting else ""),
                  highlight=False)


def _moment(text: str | None, option: str, end: bool = False) -> datetime:
    """A moment as given (UTC unless it says); a plain date is its day's start, or with `end` its day's end."""
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r}: say a date (2026-10-01) or a time (2026-10-01T09:30:00+08:00)") from None
    if end and len(text.strip()) == 10:  # --until 2026-12-31 takes in that whole day
        moment += timedelta(days=1, microseconds=-1)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@app.command()
def report(ctx: typer.Context, stack: str = StackOpt,
           since: str = typer.Option(..., "--since", help="The period's first day or moment (UTC unless it says)."),
           until: str = typer.Option(None, "--until", help="The period's end (default: now)."),
           out_dir: Path = typer.Option(Path("reports/bcdr"), "--out", help="Folder for report.json, .html, .pdf."),
           topology: Path = typer.Option(None, "--topology", help="The topology whose objectives are judged "
                                                                  "(default: the stack's)."),
           signers: Path = typer.Option(None, "--allowed-signers", help="An OpenSSH allowed-signers file (default: "
                                                                          "the operator's own evidence key)."),
           json: bool = JsonOpt) -> None:
    """The BC/DR test report of a period for the regulator, from the stack's signed records: scope, each critical
    function's RTO and RPO (a service's `objectives` in the topology) against the worst its drills achieved, load
    against the declared peak, deficiencies (open until a later passing run of the drill), the audit, every record's
    digest and signature, sign-off. Writes JSON, a self-contained HTML page and its PDF (headless Chromium). Exit 0
    when every function met its objectives at peak with nothing open and every record verified, else 1.

    Example: [bold]tradestack evidence report --stack lab --since 2026-10-01 --out reports/bcdr[/]
    """
    from ..evidence import keeper
    from ..topology import load_topology

    want_json(ctx, json)
    first, last = _moment(since, "--since"), _moment(until, "--until", end=True)
    if topology is not None:
        model = load_topology(topology)
    else:
        from ..substrates import open_stack

        model = open_stack(stack).topology
    doc, files = keeper.report(stack, model, first, last, out_dir, signers)
    if json:
        print_json({"ok": doc["ok"], "stack": stack, "files": {k: str(v) for k, v in files.items()},
                    "report": doc})
    else:
        verdict = "[bold green]PASS[/]" if doc["ok"] else "[bold red]FAIL[/]"
        out.print(f"BC/DR report of {stack}, {first.date()} to {last.date()}: {verdict}")
        for f in doc["functions"]:
            out.print(f"  {f['service']}: {'pass' if f['ok'] else 'FAIL: ' + '; '.join(f['why'])}", highlight=False)
        open_ = [d for d in doc["deficiencies"] if d["status"] == "open"]
        out.print(f"  {len(doc['drills'])} drill run(s), {len(open_)} open deficienc(ies), "
                  f"{len(doc['records'])} record(s), chain {'verified' if doc['verification']['ok'] else 'FAILED'}",
                  highlight=False)
        for kind, path in files.items():
            out.print(f"  {kind}: {path}", highlight=False)
    if not doc["ok"]:
        raise typer.Exit(ExitCode.FAILED)
