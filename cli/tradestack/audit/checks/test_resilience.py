"""Resilience controls: database leader and cross-site sync standby, etcd quorum over three sites,
diverse carrier uplinks, one VIP holder per site, one primary behind HAProxy, placement as declared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradestack import health, ports
from tradestack.adapters import systemd
from tradestack.audit.placed import programs


@pytest.mark.control("RES-01")
@pytest.mark.targets("hostname", lambda ctx: ctx.names("orderdb"))
def test_database_has_a_leader_and_a_sync_standby_in_another_site(audit, evidence, hostname):
    lan = audit.inventory[hostname]["lan_address"]
    out = evidence.run(audit.host(hostname), hostname, f"curl -s -m 3 http://{lan}:{ports.PATRONI}/cluster")
    assert out.rc == 0, f"Patroni on {hostname} does not answer"
    members = json.loads(out.stdout)["members"]
    site = {m["name"]: audit.inventory.get(m["name"], {}).get("site") for m in members}
    problems = health.database_problems(members, site, expected=len(audit.names("orderdb")))
    assert not problems, "; ".join(problems)


@pytest.mark.control("RES-02")
@pytest.mark.targets("hostname", lambda ctx: ctx.names("consensus"))
def test_etcd_has_quorum_with_members_in_three_sites(audit, evidence, hostname):
    endpoints = ",".join(f"http://{audit.inventory[h]['lan_address']}:{ports.ETCD_CLIENT}" for h in audit.names("consensus"))
    out = evidence.run(audit.host(hostname), hostname,
                       f"ETCDCTL_API=3 etcdctl --dial-timeout 2s --command-timeout 3s --endpoints {endpoints} "
                       "endpoint status -w json")
    statuses = json.loads(out.stdout or "[]")
    by_address = {audit.inventory[h]["lan_address"]: h for h in audit.names("consensus")}
    answering = [by_address.get(s["Endpoint"].split("//")[1].split(":")[0]) for s in statuses]
    leaders = {s["Status"]["leader"] for s in statuses}
    total = len(audit.names("consensus"))
    assert len(answering) > total // 2, f"only {len(answering)} of {total} members answer: no quorum"
    assert len(leaders) == 1 and 0 not in leaders, f"members disagree on the leader: {leaders}"
    sites = {audit.inventory[h]["site"] for h in answering if h}
    assert len(sites) >= 3, f"members answer from {len(sites)} site(s) only: {sorted(sites)}"


@pytest.mark.control("RES-03")
@pytest.mark.targets("site", lambda ctx: sorted(s for s, role in ctx["site_roles"].items() if role != "witness"))
def test_every_serving_site_has_two_uplinks_up_through_different_facilities(audit, evidence, site):
    up: dict[str, list[str]] = {}
    for uplink in audit["uplinks"][site]:
        if "probe" not in uplink:  # the substrate said nothing of how to look at this uplink
            pytest.fail(f"{site}: no way to look at the uplink to {uplink['carrier']} on this stack's substrate")
        out = evidence.run(audit.local(), uplink["router"], uplink["probe"])
        if out.rc == 0 and " state UP " in out.stdout:  # operational state: both ends up, carrier present
            up[uplink["carrier"]] = uplink["facilities"]
    facilities = {f for fs in up.values() for f in (fs or [f"carrier:{c}" for c in up])}
    assert len(up) >= 2, f"{site}: carrier uplinks up: {sorted(up) or 'none'} (need 2)"
    assert len(facilities) >= 2, f"{site}: every uplink that is up runs through {sorted(facilities)}"


@pytest.mark.control("RES-04")
@pytest.mark.targets("site", lambda ctx: sorted(ctx["vips"]))
def test_each_site_vip_is_held_by_exactly_one_host(audit, evidence, site):
    vip = audit["vips"][site]
    holders = []
    for name in audit.names("gateway", site):
        out = evidence.run(audit.host(name), name, f"ip -4 -o addr show dev {audit.inventory[name]['lan_interface']}")
        if f" {vip}/" in out.stdout:
            holders.append(name)
    problems = health.vip_problems(site, vip, holders)
    assert not problems, "; ".join(problems)


@pytest.mark.control("RES-05")
@pytest.mark.targets("hostname", lambda ctx: ctx.names("gateway") + ctx.names("router"))
def test_haproxy_sees_exactly_one_database_primary(audit, evidence, hostname):
    sock = f"{audit['state_base']}/{hostname}/haproxy/admin.sock"
    out = evidence.run(audit.host(hostname), hostname,
                       "python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                       "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())\" "
                       + sock)
    rows = [line.split(",") for line in out.stdout.splitlines() if line.startswith("orderdb,")]
    up = [r[1] for r in rows if r[1] not in ("FRONTEND", "BACKEND") and r[17].startswith("UP")]
    assert out.rc == 0 and rows, f"no HAProxy statistics on {hostname}"
    assert len(up) == 1, f"database servers HAProxy sends to: {up or 'none'}"


@pytest.mark.control("RES-06")
@pytest.mark.targets("placement", lambda ctx: [f"{svc}@{site}" for svc, sites in sorted(ctx["placement"].items())
                                               for site in sorted(sites)])
def test_every_service_runs_the_instances_the_topology_places(audit, evidence, placement):
    service, site = placement.split("@")
    declared = audit["placement"][service][site]
    running = 0
    if service in audit["clustered"]:  # run by the site's cluster: its ready replicas, as its API server says
        from tradestack.adapters.kube import Cluster

        kubeconfig = audit["clusters"].get(site)
        assert kubeconfig, f"{service} in {site}: the topology places {declared} and the site runs no cluster"
        with Cluster(Path(kubeconfig), site) as api:
            ready = {d.name: d.ready for d in api.deployments(audit["cluster_namespace"])}
        evidence.note(site, f"{service} ready replicas", ready.get(service, 0))
        assert ready.get(service, 0) == declared, f"{service} in {site}: {ready.get(service, 0)} ready of {declared} placed"
        return
    expected = programs(audit, service)
    assert expected, f"{service} in {site}: no program is known to run it (nothing to judge)"
    on_systemd = audit.data.get("supervisor", "supervisord") == "systemd"
    for name in audit.names(service, site):
        if on_systemd:  # one line per unit asked, in order (tradestack-<program>.service)
            out = evidence.run(audit.host(name), name,
                               "systemctl is-active " + " ".join(systemd.unit(p) for p in expected))
            if out.stdout.split() == ["active"] * len(expected):
                running += 1
            continue
        out = evidence.run(audit.host(name), name,
                           f"supervisorctl -c {audit['state_base']}/{name}/supervisor/supervisord.conf status")
        states = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
        if all(states.get(p) == "RUNNING" for p in expected):
            running += 1
    assert running == declared, f"{service} in {site}: {running} running of {declared} placed"
