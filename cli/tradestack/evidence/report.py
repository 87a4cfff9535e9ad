"""The BC/DR test report a compliance officer files: a period's signed evidence of one stack, read back from its
records (never from files that could have changed since), judged against the topology's objectives.

Sections, each naming the rules it serves: scope; critical functions (services with `objectives`) against the worst
recovery and loss the period's drills achieved; load against the declared peak; deficiencies (every failed check,
open until a later passing run of the same drill) with owner and due date to fill in; the audit; the records with
their digests and signature status; sign-off. `build` makes the document (JSON), `html` renders it self-contained;
the PDF is Chromium's print of that page (adapters/browser.py)."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..topology.model import Topology
from . import chain
from .store import Store

RULES = {
    "scope": ["Reg SCI 242.1001(a)(2)(v) (business continuity and disaster recovery plans)",
              "DORA Art. 24 (general requirements for testing)", "MAS TRM Guidelines / BCM Guidelines 2022"],
    "functions": ["Reg SCI 242.1004 (BC/DR testing with members and participants)",
                  "DORA Art. 25 (testing of ICT tools and systems), Art. 11(6) (RTO and RPO)",
                  "MAS BCM Guidelines 2022 (recovery time objectives of critical business services)"],
    "load": ["CSRC stress-test measures 2023 (throughput against the historical peak)",
             "DORA Art. 25(1) (performance and capacity testing)"],
    "deficiencies": ["RTS 2024/1774 Art. 25 (deficiencies analysed, remedied and reported to the management body)",
                     "DORA Art. 24(5)"],
    "audit": ["Reg SCI 242.1001 (policies and procedures)", "DORA Art. 24-26"],
    "records": ["SEC Rule 17a-4(f) (records on write-once storage or with a complete audit trail)",
                "CSRC: stress-test records kept at least 5 years"],
    "sign_off": ["RTS 2024/1774 Art. 25 (reported to the management body)", "DORA Art. 26(6)"],
}
HEADINGS = {"scope": "Scope", "functions": "Critical functions against their objectives",
            "load": "Load against the declared peak", "deficiencies": "Deficiencies", "audit": "Compliance audit",
            "records": "Evidence records", "sign_off": "Sign-off"}


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _content(store: Store, stack: str, record: chain.Record, name: str) -> dict[str, Any] | None:
    digest = record.files.get(name)
    data = store.get(f"{stack}/objects/{digest}") if digest else None
    if data is None or chain.digest(data) != digest:
        return None
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def build(store: Store, anchor: Store, stack: str, topology: Topology, keys: Any, since: datetime,
          until: datetime) -> dict[str, Any]:
    """The report's document for `stack` over [since, until]: read from the records kept in `store` (the
    drill reports and audits they hold), their verification against `keys` included."""
    checked, problems = chain.verify(store, anchor, stack, keys)
    records = [r for r in chain.records(store, stack) if since <= _when(r.created) <= until]
    drills, audits = [], []
    for record in records:
        if record.kind == "drill" and (report := _content(store, stack, record, "report.json")):
            drills.append((record, report))
        elif record.kind == "audit" and (audit := _content(store, stack, record, "audit.json")):
            audits.append((record, audit))
    peak = topology.peak
    runs = [{"record": r.seq, "run": d.get("run"), "drill": d.get("drill"), "verdict": d.get("verdict"),
             "started": r.created, "recovery_s": (d.get("figures") or {}).get("recovery_s"),
             "acked_lost": ((d.get("reconciliation") or {}).get("acked_missing") or {}).get("count"),
             "orders_per_s": (d.get("plan") or {}).get("rate"), "sessions": (d.get("plan") or {}).get("sessions")}
            for r, d in drills]
    functions = []
    for service in topology.services:
        if service.objectives is None:
            continue
        judged = [r for r in runs if r["recovery_s"] is not None or r["acked_lost"] is not None]
        never = [r for r in runs if r["recovery_s"] is None and r["verdict"] == "fail"]
        worst_rto = max(judged, key=lambda r: r["recovery_s"] or 0.0, default=None)
        worst_rpo = max(judged, key=lambda r: r["acked_lost"] or 0, default=None)
        rto = worst_rto["recovery_s"] if worst_rto else None
        rpo = worst_rpo["acked_lost"] if worst_rpo else None
        why = []
        if not judged:
            why.append("no drill of the period measured it: nothing judged")
        if never:
            why.append(f"never recovered in {', '.join(r['run'] for r in never)}")
        if rto is not None and rto > service.objectives.rto_s:
            why.append(f"recovery {rto:g} s > RTO {service.objectives.rto_s:g} s ({worst_rto['run']})")
        if rpo is not None and rpo > service.objectives.rpo_orders:
            why.append(f"{rpo} acknowledged orders lost > RPO {service.objectives.rpo_orders} ({worst_rpo['run']})")
        functions.append({"service": service.name, "rto_s": service.objectives.rto_s,
                          "rpo_orders": service.objectives.rpo_orders, "worst_recovery_s": rto,
                          "worst_recovery_run": worst_rto["run"] if worst_rto else None, "worst_acked_lost": rpo,
                          "drills": len(judged), "ok": not why, "why": why})
    load = [{**{k: r[k] for k in ("record", "run", "drill", "orders_per_s", "sessions")},
             "at_peak": (r["orders_per_s"] or 0) >= peak.get("orders_per_second", 0)
             and (r["sessions"] or 0) >= peak.get("sessions", 0)} for r in runs]
    deficiencies = []
    for record, report in drills:
        for check in report.get("checks") or []:
            if check.get("ok"):
                continue
            later = next((r for r in runs if r["drill"] == report.get("drill") and r["record"] > record.seq
                          and r["verdict"] == "pass"), None)
            deficiencies.append({"record": record.seq, "run": report.get("run"), "drill": report.get("drill"),
                                 "check": check.get("check"), "expected": check.get("expected"),
                                 "actual": check.get("actual"), "found": record.created,
                                 "status": "closed" if later else "open",
                                 "closed_by": later["run"] if later else None, "owner": "", "due": ""})
    audit = None
    if audits:
        record, doc = audits[-1]
        audit = {"record": record.seq, "created": record.created, "headline": doc.get("headline"),
                 "ok": doc.get("ok"), "controls": len(doc.get("controls") or []),
                 "failing": [{"id": c.get("id"), "severity": c.get("severity"), "title": c.get("title")}
                             for c in doc.get("controls") or [] if c.get("verdict") != "pass"]}
    troubled = {int(m.group(1)) for p in problems if (m := re.match(r"record (\d+)\b", p))}
    listed = [{"seq": r.seq, "kind": r.kind, "subject": r.subject, "created": r.created, "operator": r.operator,
               "signer": r.signer, "digest": chain.digest(r.canonical()),
               "signature": "problem: see verification" if r.seq in troubled else "verified"} for r in records]
    sites = {s.name: s for s in topology.sites}
    ok = (checked > 0 and not problems and bool(runs) and all(f["ok"] for f in functions) and bool(functions)
          and not any(d["status"] == "open" for d in deficiencies) and all(x["at_peak"] for x in load))
    return {
        "stack": stack, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool_version": __version__, "period": {"since": since.isoformat(), "until": until.isoformat()},
        "ok": ok, "rules": RULES, "headings": HEADINGS,
        "scope": {"topology": topology.name, "peak": dict(peak), "headroom": topology.headroom,
                  "carriers": [c.name for c in topology.carriers],
                  "sites": [{"name": n, "role": s.role, "carriers": [u.carrier for u in s.uplinks],
                             "risk_groups": list(s.risk_groups)} for n, s in sites.items()],
                  "services": [{"name": s.name, "kind": s.kind, "placement": dict(s.placement),
                                "critical": s.objectives is not None} for s in topology.services]},
        "functions": functions, "drills": runs, "load": load, "deficiencies": deficiencies, "audit": audit,
        "records": listed, "verification": {"records": checked, "ok": not problems, "problems": problems},
        "sign_off": {"prepared_by": records[-1].operator if records else "", "reviewed_by": "", "approved_by": "",
                     "date": ""},
    }


def html(doc: dict[str, Any]) -> str:
    """The report as one self-contained page (no script, no fetched asset), printable to PDF."""
    e = html_lib.escape

    def table(head: list[str], rows: list[list[Any]]) -> str:
        if not rows:
            return "<p><em>none in this period</em></p>"
        cells = "".join("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                        for row in rows)
        return "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + f"</tr>{cells}</table>"

    def section(key: str, body: str) -> str:
        rules = "; ".join(doc["rules"][key])
        return (f'<section id="{key}"><h2>{e(doc["headings"][key])}</h2>'
                f'<p class="rules">Serves: {e(rules)}</p>{body}</section>')

    scope = doc["scope"]
    verdict = "PASS" if doc["ok"] else "FAIL"
    parts = [
        section("scope", f"<p>Topology <b>{e(scope['topology'])}</b>: declared peak {e(json.dumps(scope['peak']))}, "
                         f"headroom {scope['headroom']:g}; carriers {e(', '.join(scope['carriers']))}.</p>"
                + table(["site", "role", "carriers", "risk groups"],
                        [[s["name"], s["role"], ", ".join(s["carriers"]), ", ".join(s["risk_groups"])]
                         for s in scope["sites"]])
                + table(["service", "kind", "placement", "critical function"],
                        [[s["name"], s["kind"], json.dumps(s["placement"]), "yes" if s["critical"] else "no"]
                         for s in scope["services"]])),
        section("functions", table(["function", "RTO (s)", "RPO (orders)", "worst recovery (s)", "run",
                                    "worst lost", "drills", "result"],
                                   [[f["service"], f["rto_s"], f["rpo_orders"], f["worst_recovery_s"],
                                     f["worst_recovery_run"], f["worst_acked_lost"], f["drills"],
                                     "pass" if f["ok"] else "FAIL: " + "; ".join(f["why"])]
                                    for f in doc["functions"]])),
        section("load", table(["record", "run", "drill", "orders/s", "sessions", "at the declared peak"],
                              [[x["record"], x["run"], x["drill"], x["orders_per_s"], x["sessions"],
                                "yes" if x["at_peak"] else "NO"] for x in doc["load"]])),
        section("deficiencies", table(["record", "drill", "check", "expected", "actual", "status", "closed by",
                                       "owner", "due"],
                                      [[d["record"], d["drill"], d["check"], d["expected"], d["actual"], d["status"],
                                        d["closed_by"], d["owner"] or "________", d["due"] or "________"]
                                       for d in doc["deficiencies"]])),
        section("audit", "<p><em>no audit in this period</em></p>" if not doc["audit"] else
                f"<p>Record {doc['audit']['record']} ({e(doc['audit']['created'])}): "
                f"<b>{e(str(doc['audit']['headline']))}</b> over {doc['audit']['controls']} controls.</p>"
                + table(["failing control", "severity", "title"],
                        [[c["id"], c["severity"], c["title"]] for c in doc["audit"]["failing"]])),
        section("records", "<p>Chain verification: "
                           f"{'every record verified' if doc['verification']['ok'] else 'FAILED'}"
                           f" ({doc['verification']['records']} records checked).</p>"
                + "".join(f"<p class='problem'>{e(p)}</p>" for p in doc["verification"]["problems"])
                + table(["#", "kind", "subject", "created", "operator", "signature"],
                        [[r["seq"], r["kind"], r["subject"], r["created"], r["operator"], r["signature"]]
                         for r in doc["records"]])
                # each digest whole on a line of its own, so a reader (or pdftotext) finds it as written
                + "<p>SHA-256 of each record as signed:</p><ul class='digests'>"
                + "".join(f"<li><code>{r['seq']}: {e(r['digest'])}</code></li>" for r in doc["records"])
                + "</ul>"),
        section("sign_off", table(["role", "name", "signature", "date"],
                                  [["prepared by", doc["sign_off"]["prepared_by"], "", ""],
                                   ["reviewed by", "", "", ""], ["approved by (management body)", "", "", ""]])),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BC/DR test report: {e(doc['stack'])}</title>
<style>
body {{ font-family: sans-serif; font-size: 10pt; margin: 1.5em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; width: 100%; }}
td, th {{ border: 1px solid #999; padding: 2px 4px; text-align: left; vertical-align: top; }}
td {{ overflow-wrap: anywhere; }}
th {{ background: #eee; }} .rules {{ color: #444; font-style: italic; }} .problem {{ color: #b00; }}
.digests {{ font-size: 8pt; list-style: none; padding-left: 0; }}
#verdict {{ font-weight: bold; color: {'#070' if doc['ok'] else '#b00'}; }}
section {{ page-break-inside: auto; }}
</style></head><body>
<h1>Business continuity and disaster recovery test report</h1>
<p>Stack <b>{e(doc['stack'])}</b>, period {e(doc['period']['since'])} to {e(doc['period']['until'])};
generated {e(doc['generated'])} by tradestack {e(doc['tool_version'])}. Overall: <span id="verdict">{verdict}</span></p>
{''.join(parts)}
</body></html>
"""
