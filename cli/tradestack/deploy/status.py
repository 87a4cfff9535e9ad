"""One view of a deployed stack: hosts and programs per site, VIP holders, Patroni leader and sync
standby with lag, etcd members and leader, carriers, the alerts its Prometheus hold. Collected by a read-only
playbook."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .. import health, ports
from ..adapters import systemd
from ..adapters.ansible import PlaybookSpec, run_playbook
from ..substrates import Host, open_stack
from . import run


def collect(stack_name: str, on_step: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    stack = open_stack(stack_name)
    topology = stack.topology
    files = stack.access_files()
    results: dict[str, dict[str, Any]] = {}

    def keep(event: dict[str, Any]) -> None:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            results.setdefault(data.get("host", "?"), {})[data.get("task", "?")] = data.get("res") or {}
            if event.get("event") == "runner_on_unreachable":
                res = data.get("res") or {}
                results[data.get("host", "?")]["unreachable"] = str(res.get("msg") or "no answer").strip()

    on_step("asking every host")
    spec = PlaybookSpec(project_dir=run.PLAYBOOKS, playbook="status.yml", inventory=files.inventory,
                        run_dir=run.runs_dir(stack_name).parent / "status",
                        # the stack's own host settings: where its programs' supervisor and state are
                        extravars={"tradestack_stack": stack_name, **ports.playbook_vars(),
                                   **stack.settings.playbook_vars(), **stack.traits.playbook_vars()},
                        env=run.ansible_env())
    first = run_playbook(spec, keep)
    # one late SSH answer (a busy host, a lost packet) is not an outage: ask a host that did not answer once
    # more before calling it unreachable
    silent = sorted({f.host for f in first.failures if f.unreachable})
    if silent:
        on_step(f"asking again: {', '.join(silent)}")
        for name in silent:
            results.pop(name, None)
        run_playbook(replace(spec, limit=",".join(silent)), keep)
    sites: dict[str, Any] = {}
    for site in topology.sites:
        hosts = {h.name: _host(results.get(h.name, {}), h) for h in stack.hosts.values() if h.site == site.name}
        vip = stack.vips.get(site.name)
        holders = [name for name, h in hosts.items() if vip in h.get("addresses", [])]
        carriers = stack.uplink_states(site.name)
        sites[site.name] = {"role": site.role, "hosts": hosts, "carriers": carriers,
                            "vip": {"address": vip, "holder": holders[0] if holders else None, "holders": holders}
                            if vip else None}
    outside = {h.name: _host(results.get(h.name, {}), h) for h in stack.hosts.values() if not h.site}
    on_step("asking the site clusters")
    return {"stack": stack_name, "sites": sites, "outside": outside,
            "database": _patroni(results), "consensus": _etcd(results, stack.hosts),
            "monitoring": _alerts(results, [h.name for h in stack.of("monitoring")]),
            "clusters": stack.clusters.view() if stack.clusters else {}}


def _host(res: dict[str, Any], host: Host) -> dict[str, Any]:
    programs: dict[str, str] = {}
    for line in (res.get("Supervised programs", {}).get("stdout") or "").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            programs[parts[0]] = parts[1].lower()
    # on systemd hosts, unit tradestack-<program>.service runs <program>
    programs |= systemd.program_states(res.get("Systemd units", {}).get("stdout") or "")
    addresses = [line.split()[3].split("/")[0] for line in
                 (res.get("Addresses on the site LAN (the VIP holder has two)", {}).get("stdout") or "").splitlines()
                 if len(line.split()) > 3]
    seen = {"service": host.service, "reachable": not res.get("unreachable"), "programs": programs,
            "addresses": addresses}
    if res.get("unreachable"):
        seen["error"] = res["unreachable"]
    return seen


def _patroni(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for res in results.values():
        cluster = res.get("Patroni's view of the cluster", {})
        content = _body(cluster)
        if content and content.get("members"):
            members = [{"name": m["name"], "role": m["role"], "state": m.get("state"), "lag": m.get("lag"),
                        "timeline": m.get("timeline")} for m in content["members"]]
            leader = next((m["name"] for m in members if m["role"] == "leader"), None)
            sync = health.synchronous_standbys(members)
            return {"leader": leader, "sync_standby": sync, "members": members}
    return {"leader": None, "sync_standby": [], "members": [], "error": "no Patroni node answered"}


def _etcd(results: dict[str, dict[str, Any]], hosts: Mapping[str, Host]) -> dict[str, Any]:
    by_address = {h.lan_address: name for name, h in hosts.items()}
    for res in results.values():
        out = res.get("Etcd members and leader", {}).get("stdout")
        if out:
            statuses = json.loads(out)
            leader_id = next((s["Status"]["leader"] for s in statuses), None)
            members = []
            for s in statuses:
                address = s["Endpoint"].split("//")[1].split(":")[0]
                members.append({"name": by_address.get(address, address), "endpoint": s["Endpoint"],
                                "leader": s["Status"]["header"]["member_id"] == leader_id})
            return {"members": members, "leader": next((m["name"] for m in members if m["leader"]), None)}
    return {"members": [], "leader": None, "error": "no etcd member answered"}


def _body(answer: dict[str, Any]) -> Any:
    """The JSON an `ansible.builtin.uri` task read (parsed by the module, or its raw content); None without one."""
    return answer.get("json") or (json.loads(answer["content"]) if answer.get("content") else None)


def _alerts(results: dict[str, dict[str, Any]], monitors: list[str]) -> dict[str, Any]:
    """The alerts every Prometheus that answered holds (each evaluates the same rules over the same targets: one
    alert, seen by several, is listed once, with who saw it)."""
    alerts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    answered = []
    for name in monitors:
        body = _body(results.get(name, {}).get("Alerts Prometheus holds", {}))
        if not body or body.get("status") != "success":
            continue
        answered.append(name)
        for a in body["data"]["alerts"]:
            labels = dict(a.get("labels") or {})
            key = tuple(sorted(labels.items()))
            seen = alerts.setdefault(key, {"alert": labels.pop("alertname", "?"),
                                           "severity": labels.pop("severity", "none"), "state": a.get("state"),
                                           "since": a.get("activeAt"), "labels": labels,
                                           "summary": (a.get("annotations") or {}).get("summary"), "seen_by": []})
            if a.get("state") == "firing":
                seen["state"] = "firing"
            seen["seen_by"].append(name)
    view: dict[str, Any] = {"prometheus": monitors, "answered": answered,
                            "alerts": sorted(alerts.values(), key=lambda a: (a["state"] != "firing", a["alert"]))}
    if monitors and not answered:
        view["error"] = "no Prometheus answered"
    return view


def problems(view: dict[str, Any]) -> list[str]:
    """What is wrong in a status view, one line each (empty: healthy); judged as drills and the audit judge."""
    found: list[str] = []
    site_of: dict[str, str | None] = {}
    databases = 0
    for site, info in view["sites"].items():
        for host, h in info["hosts"].items():
            site_of[host] = site
            databases += h["service"] == "orderdb"
            if not h["reachable"]:
                found.append(f"{host} is unreachable" + (f": {h['error']}" if h.get("error") else ""))
            else:
                found += health.program_problems(host, h["programs"])
        if info["vip"]:
            found += health.vip_problems(site, info["vip"]["address"], info["vip"]["holders"])
        found += [f"{site}: carrier {c} is down" for c, up in info["carriers"].items() if up is False]
    for host, h in view["outside"].items():
        if h["service"] != "loadgen":  # the clients' host runs nothing supervised: judged by reachability
            found += health.program_problems(host, h["programs"])
    found += health.database_problems(view["database"]["members"], site_of, expected=databases)
    if not view["consensus"]["leader"]:
        found.append("etcd: no leader")
    found += health.cluster_problems(view.get("clusters") or {})
    monitoring = view.get("monitoring") or {}
    if monitoring.get("error"):
        found.append(f"monitoring: {monitoring['error']} ({', '.join(monitoring['prometheus'])})")
    found += [f"alert {a['alert']} is firing" + (f": {a['summary']}" if a.get("summary") else "")
              for a in monitoring.get("alerts", []) if a["state"] == "firing" and a["severity"] == "critical"]
    return found
