"""A drill's report for people: a self-contained HTML page with the timeline plot embedded, and the plot
as a PNG beside it. Built from the JSON report alone, so `drill report RUN` can rebuild it any time."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from . import figures


def _pyplot() -> Any:
    """matplotlib's pyplot with no display (reports are built on servers and in CI), imported when a plot is
    drawn: importing it costs about 0.6 s of CPU, which every command that only plans, lists or refuses a drill
    paid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_png(report: dict[str, Any]) -> bytes:
    """Throughput, client errors and p99 latency over time, with the fault window and failover markers."""
    timeline = figures.continuous(report.get("timeline") or [])
    marks = report.get("marks") or {}
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, constrained_layout=True)
    t = [b["t"] for b in timeline]
    base = marks.get("load_started", 0.0)
    shift = [x + base for x in t]
    ax1.plot(shift, [b["acked"] * 2 for b in timeline], color="#1f77b4", label="acknowledged orders/s")
    ax1.plot(shift, [b["errors"] * 2 for b in timeline], color="#d62728", label="not served at once /s")
    ax1.set_ylabel("orders per second")
    ax2.plot(shift, [b["p99_ms"] if b["p99_ms"] is not None else float("nan") for b in timeline],
             color="#2ca02c", label="p99 latency (acked)")
    ax2.set_ylabel("ms")
    ax2.set_yscale("symlog", linthresh=10)
    ax2.set_xlabel("seconds since the drill started")
    for ax in (ax1, ax2):
        if "injected" in marks:
            ax.axvspan(marks["injected"], marks.get("restored", marks["injected"]), color="#ff7f0e", alpha=0.15,
                       label="fault window" if ax is ax1 else None)
        for x, label in _failovers(report):
            ax.axvline(x, color="#9467bd", linestyle="--", linewidth=1, label=label if ax is ax1 else None)
        for x, label, firing in _pages(report):
            ax.axvline(x, color="#d62728" if firing else "#2ca02c", linestyle=":", linewidth=1.2,
                       label=label if ax is ax1 else None)
        ax.grid(alpha=0.3)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"{report['drill']} on {report['stack']}: {report['verdict'].upper()}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _failovers(report: dict[str, Any]) -> list[tuple[float, str]]:
    """Moments the database leader or a VIP holder changed, from the observer's samples."""
    marks: list[tuple[float, str]] = []
    samples = report.get("samples") or []
    for prev, cur in zip(samples, samples[1:]):
        if cur["leader"] != prev["leader"]:
            marks.append((cur["t"], f"database leader: {cur['leader'] or 'none'}"))
        for site, holder in cur["vip_holders"].items():
            if holder != prev["vip_holders"].get(site):
                marks.append((cur["t"], f"VIP {site}: {holder or 'none'}"))
    return marks[:12]


def _pages(report: dict[str, Any]) -> list[tuple[float, str, bool]]:
    """When the on-call was first sent each alert, and when it was sent resolved (drills/alerts.py)."""
    heard = report.get("alerts") or {}
    out: list[tuple[float, str, bool]] = []
    seen: set[tuple[str, str]] = set()
    for event in heard.get("events") or []:
        key = (event["alert"], event["status"])
        if key not in seen:
            seen.add(key)
            out.append((event["t"] - report["started"], f"paged: {event['alert']} {event['status']}",
                        event["status"] == "firing"))
    return out[:12]


def write(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """report.json, timeline.png and report.html in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "png": directory / "timeline.png", "html": directory / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    png = plot_png(report)
    paths["png"].write_bytes(png)
    paths["html"].write_text(render_html(report, png))
    return paths


def _cell(x: float | None) -> str:
    return "never" if x is None else f"{x:g}"


def render_html(report: dict[str, Any], png: bytes) -> str:
    e = html.escape
    verdict = report["verdict"]
    colour = {"pass": "#1a7f37", "fail": "#cf222e"}.get(verdict, "#9a6700")
    figures = report.get("figures") or {}
    rows = "".join(f"<tr><td>{e(c['check'])}</td><td>{e(str(c['expected']))}</td><td>{e(str(c['actual']))}</td>"
                   f"<td class={'ok' if c['ok'] else 'bad'}>{'pass' if c['ok'] else 'FAIL'}</td></tr>"
                   for c in report["checks"])
    figs = "".join(f"<tr><td>{e(k)}</td><td>{e(json.dumps(v))}</td></tr>" for k, v in figures.items())
    journal = "".join(f"<tr><td>{s['started'] - report['started']:.1f}</td><td>{e(s['name'])}</td>"
                      f"<td class={'ok' if s['ok'] else 'bad'}>{'ok' if s['ok'] else 'failed'}</td>"
                      f"<td>{e(s['detail'])}</td></tr>" for s in report["journal"])
    steps = "".join(f"<li>{e(s)}</li>" for s in report["plan"]["steps"])
    heard = report.get("alerts")
    pages = ("<p>No monitoring hosts on this stack: nobody was paged.</p>" if heard is None else
             "<table><tr><th>alert</th><th>notified after the fault (s)</th><th>bound</th>"
             "<th>resolved after the restore (s)</th><th>bound</th></tr>"
             + "".join(f"<tr><td>{e(a['alert'])}</td><td>{_cell(a['notified_s'])}</td>"
                       f"<td>{a.get('notified_within_s', 'not expected')}</td><td>{_cell(a['resolved_s'])}</td>"
                       f"<td>{a.get('resolved_within_s', '')}</td></tr>"
                       for a in heard["expected"] + heard["unexpected"]) + "</table>"
             + f"<p>{heard['notifications']} notification(s); not expected: "
             + (e(", ".join(a["alert"] for a in heard["unexpected"])) or "none") + "</p>")
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>drill {e(report['run'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; }}
.ok {{ color: #1a7f37; }} .bad {{ color: #cf222e; font-weight: bold; }}
.verdict {{ font-size: 1.4em; color: {colour}; font-weight: bold; }}
</style></head><body>
<h1>Drill <code>{e(report['drill'])}</code> on stack <code>{e(report['stack'])}</code></h1>
<p>{e(report['description'])}</p>
<p>Run <code id="run">{e(report['run'])}</code>: verdict <span class="verdict" id="verdict">{e(verdict.upper())}</span></p>
<h2>Expectations</h2>
<table><tr><th>check</th><th>expected</th><th>actual</th><th>result</th></tr>{rows}</table>
<h2>Timeline</h2>
<img alt="throughput, errors and latency over time" src="data:image/png;base64,{image}">
<h2>What the on-call was sent</h2>{pages}
<h2>Figures</h2><table>{figs}</table>
<h2>Plan</h2><ol>{steps}</ol>
<h2>Journal</h2>
<table><tr><th>t (s)</th><th>step</th><th>result</th><th>detail</th></tr>{journal}</table>
</body></html>
"""
