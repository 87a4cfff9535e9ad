"""Audit reports: JSON for machines, a self-contained HTML page for auditors, and a manifest with the
SHA-256 of every artifact (JUnit XML included) so any later change to one of them shows."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.sha256"


def write_reports(out_dir: Path, summary: dict[str, Any], controls: list[dict[str, Any]],
                  records: list[dict[str, Any]], ok: bool) -> dict[str, Path]:
    paths = {"junit": out_dir / "junit.xml", "json": out_dir / "audit.json", "html": out_dir / "audit.html"}
    document = {"ok": ok, **summary, "controls": controls, "results": records}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    paths["html"].write_text(render_html(document))
    paths["manifest"] = write_manifest(out_dir, [paths["junit"], paths["json"], paths["html"]])
    return paths


def write_manifest(out_dir: Path, artifacts: list[Path]) -> Path:
    """`sha256sum`-compatible lines: check with `sha256sum -c manifest.sha256` in the report folder."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in artifacts if p.exists()]
    path = out_dir / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def verify_manifest(out_dir: Path) -> list[str]:
    """Artifacts whose digest no longer matches the manifest (empty: intact)."""
    bad = []
    for line in (out_dir / MANIFEST).read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = out_dir / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return bad


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape
    colour = {"pass": "ok", "fail": "bad", "skipped": "skip"}
    severity = {"high": 0, "medium": 1, "low": 2}
    ordered = sorted(doc["controls"], key=lambda c: (c["verdict"] == "pass", severity[c["severity"]], c["id"]))
    control_rows = "".join(
        f"<tr id='control-{e(c['id'])}'><td><b>{e(c['id'])}</b></td><td>{e(c['title'])}</td><td>{e(c['severity'])}</td>"
        f"<td class='{colour[c['verdict']]}'>{e(c['verdict'].upper())}</td><td>{c['targets']}</td>"
        f"<td>{'<br>'.join(e(x) for x in c['failed'])}"
        + (f"<div class='remedy'><b>What to do:</b> {e(c.get('remedy', ''))}</div>" if c["verdict"] != "pass" else "")
        + "</td></tr>" for c in ordered)
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for c in doc["controls"]:
        for ref in c["refs"]:
            by_rule.setdefault(ref, []).append(c)
    rule_rows = "".join(f"<tr><td>{e(rule)}</td><td>"
                        + ", ".join(f"{e(c['id'])} <span class='{colour[c['verdict']]}'>{e(c['verdict'])}</span>"
                                    for c in cs) + "</td></tr>" for rule, cs in sorted(by_rule.items()))
    hosts: dict[str, dict[str, int]] = {}
    for r in doc["results"]:
        for item in r["evidence"]:
            counts = hosts.setdefault(item["host"], {"passed": 0, "failed": 0, "skipped": 0})
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    host_rows = "".join(f"<tr><td>{e(h)}</td><td class='ok'>{n['passed']}</td><td class='bad'>{n['failed']}</td>"
                        f"<td class='skip'>{n['skipped']}</td></tr>" for h, n in sorted(hosts.items()))
    outcome_class = {"passed": "ok", "failed": "bad", "skipped": "skip"}
    evidence_rows = [f"<tr><td>{e(str(r['control']))}</td><td>{e(r['target'])}</td>"
                     f"<td class='{outcome_class.get(r['outcome'], 'skip')}'>{e(r['outcome'])}</td>"
                     f"<td>{e(r['reason'])}{''.join(_evidence(i) for i in r['evidence'])}</td></tr>"
                     for r in doc["results"]]
    verdict = doc.get("headline") or ("PASS" if doc["ok"] else "FAIL")
    policy = {"high": "of severity high", "medium": "of severity medium or high", "low": "of any severity"}[
        doc.get("fail_on", "high")]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tradestack audit of {e(doc['stack'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #d0d7de; padding: 4px 8px;
vertical-align: top; text-align: left; }} .ok {{ color: #1a7f37; }} .bad {{ color: #cf222e; font-weight: bold; }}
.skip {{ color: #9a6700; }} pre {{ white-space: pre-wrap; max-height: 12em; overflow: auto; background: #f6f8fa;
margin: 2px 0; }} .ev {{ margin-top: 4px; }} .remedy {{ margin-top: 4px; color: #1f2328; }}
</style></head><body>
<h1>Compliance audit: stack <code>{e(doc['stack'])}</code> — <span id="verdict" class="{'ok' if verdict == 'PASS' else 'bad'}">{e(verdict)}</span></h1>
<p>Topology <code>{e(doc['topology'])}</code>; {e(doc['tool'])}; run {e(doc['started'])} to {e(doc['ended'])};
{len(doc['hosts'])} hosts. PASS means every control passed, each having judged at least one target; the title
names every control that did not. The exit code failed on controls {policy} (<code>--fail-on</code>). Failing
controls come first, each with what to do about it. Artifacts and their SHA-256 are listed in
<code>manifest.sha256</code> beside this file.</p>
<h2>By control</h2>
<table><tr><th>control</th><th>title</th><th>severity</th><th>verdict</th><th>targets</th><th>findings</th></tr>{control_rows}</table>
<h2>By rule referenced</h2>
<table><tr><th>rule</th><th>controls</th></tr>{rule_rows}</table>
<h2>By host</h2>
<table><tr><th>host</th><th>passed</th><th>failed</th><th>skipped</th></tr>{host_rows}</table>
<h2>Evidence</h2>
<table><tr><th>control</th><th>target</th><th>result</th><th>reason and evidence</th></tr>{''.join(evidence_rows)}</table>
</body></html>
"""


def _evidence(item: dict[str, Any]) -> str:
    e = html.escape
    rc = "" if item["rc"] is None else f" (rc {item['rc']})"
    return (f"<div class='ev'><b>{e(item['host'])}</b> at {e(_time(item['at']))}: <code>{e(item['command'])}</code>"
            f"{rc}<pre>{e(item['output'])}</pre></div>")


def _time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
