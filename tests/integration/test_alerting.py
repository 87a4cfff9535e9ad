"""Monitoring deployed like the rest, on the session lab: each data site's Prometheus scrapes every target of the
stack and evaluates the repository's rules; `status` lists what fires; `capacity peak --stack` reads the stack's
own history, clients' load apart from the toolkit's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tradestack.cli.app import app
from tradestack.lab.substrate import LabSubstrate as Lab
from tradestack.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(1200)]


def _query(url: str, expr: str) -> list[dict]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def watched(deployed):
    """The deployed session lab with each of its Prometheus seeing every target up. The session lab's first
    module (its name sorts first): in runs 47 and 48 a host whose namespace test_lab had deleted and repaired could
    not be deployed again ("EOF on stream"; not understood yet)."""
    name = deployed["stack"].name
    lab = Lab.open(name)
    urls = lab.prometheus_urls()
    assert len(urls) == 2, urls  # lab.yaml: one monitoring host in each data site

    def all_up() -> bool:
        try:
            return all(r["value"][1] == "1" for u in urls for r in _query(u, "up")) and all(
                len(_query(u, "up")) >= 20 for u in urls)
        except (httpx.HTTPError, AssertionError):
            return False
    assert wait_for(all_up, 90, 2), {u: _query(u, "up == 0") for u in urls}
    return {"name": name, "lab": lab, "urls": urls, "inventory": deployed["inventory"]}


def test_each_sites_prometheus_scrapes_every_target_of_the_stack_and_loads_the_repositorys_rules(watched):
    inventory = watched["inventory"]

    def hosts(*services: str) -> set[str]:
        return {h for h, hv in inventory.items() if hv["service"] in services}
    # from the inventory by hand: what each kind of host serves
    expected = ({("gateway", h) for h in hosts("gateway")} | {("router", h) for h in hosts("router")}
                | {("haproxy", h) for h in hosts("gateway", "router")} | {("patroni", h) for h in hosts("orderdb")}
                | {("etcd", h) for h in hosts("consensus")} | {("prometheus", h) for h in hosts("monitoring")}
                | {("alertmanager", h) for h in hosts("monitoring")})
    assert len(expected) == 4 + 2 + 6 + 2 + 3 + 2 + 2
    for url in watched["urls"]:
        up = _query(url, "up")
        seen = {(r["metric"]["job"], r["metric"]["host"]) for r in up if r["metric"]["job"] != "site-vip"}
        assert seen == expected, url
        vips = {r["metric"]["site"] for r in up if r["metric"]["job"] == "site-vip"}
        assert vips == {"sz1", "hk1"} and all(r["value"][1] == "1" for r in up), (url, up)
        groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = {r["name"] for g in groups for r in g["rules"]}
        assert {"TradestackDatabaseNoLeader", "TradestackSiteVipDown", "tradestack:client_sessions"} <= rules
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), url


def _status(name: str) -> tuple[int, dict]:
    r = CliRunner().invoke(app, ["status", "--stack", name, "--json"])
    return r.exit_code, json.loads(r.stdout)


def _firing(view: dict) -> set[tuple[str, str]]:
    return {(a["alert"], a["labels"].get("host") or a["labels"].get("site", "")) for a in
            view["monitoring"]["alerts"] if a["state"] == "firing"}


def test_status_lists_the_alerts_a_stopped_service_and_a_lost_vip_fire_and_they_clear(watched):
    """The router of hk1 stopped (TradestackTargetDown, a warning) and both keepalived of hk1 stopped (nobody
    holds its VIP: TradestackSiteVipDown, critical): `status` lists both firing and counts the critical one a
    problem; started again, both resolve."""
    lab, name = watched["lab"], watched["name"]
    router = lab.of("router", "hk1")[0].name
    gateways = [g.name for g in lab.of("gateway", "hk1")]
    stopped = [(router, "tradestack-router")] + [(g, "keepalived") for g in gateways]

    def supervisorctl(host: str, action: str, program: str) -> None:
        subprocess.run(["supervisorctl", "-c", str(lab.supervisor_conf(host)), action, program],
                       capture_output=True, timeout=30)
    seen: dict = {}
    try:
        for host, program in stopped:
            supervisorctl(host, "stop", program)

        def both_firing() -> bool:
            seen["code"], seen["view"] = _status(name)
            return {("TradestackTargetDown", router), ("TradestackSiteVipDown", "hk1")} <= _firing(seen["view"])
        assert wait_for(both_firing, 90, 3), seen.get("view", {}).get("monitoring")
        assert seen["code"] == 1
        problems = seen["view"]["problems"]
        assert "alert TradestackSiteVipDown is firing: site hk1: nobody holds its public address" in problems
        assert not [p for p in problems if "TradestackTargetDown" in p]  # a warning: shown, not a problem
        assert f"{router}: tradestack-router is stopped" in problems
    finally:
        for host, program in stopped:
            supervisorctl(host, "start", program)

    def cleared() -> bool:
        seen["code"], seen["view"] = _status(name)
        return not _firing(seen["view"]) & {("TradestackTargetDown", router), ("TradestackSiteVipDown", "hk1")}
    assert wait_for(cleared, 90, 3), seen["view"]["monitoring"]
    assert wait_for(lambda: _status(name)[0] == 0, 60, 3), _status(name)[1]["problems"]


def test_the_stacks_peak_counts_clients_and_leaves_the_toolkits_own_load_out(watched, tmp_path: Path):
    """Clients at 20/s in 10 sessions (`--as-clients`) beside the toolkit's own 30/s in 6: `capacity peak --stack`
    reads the clients' alone, from the gateways' counts (orders) and the load balancers' (sessions)."""
    lab, name = watched["lab"], watched["name"]
    endpoints = [arg for e in lab.endpoints() for arg in ("--endpoint", e)]

    def load(rate: int, sessions: int, ledger: str, *extra: str):
        argv = [*lab.tool_argv(lab.clients_host), "refstack", "load", *endpoints, "--rate", str(rate),
                "--sessions", str(sessions), "--duration", "80", "--ledger", str(tmp_path / ledger), *extra]
        return lab.spawn(lab.clients_host, argv)
    clients, toolkit = load(20, 10, "clients.sqlite", "--as-clients"), load(30, 6, "toolkit.sqlite")
    for proc in (clients, toolkit):
        out, errs = proc.communicate(timeout=180)
        assert proc.returncode == 0, errs[-2000:]
    time.sleep(20)  # the last samples scraped and recorded (every 5 s, rules over a minute's rate)
    done = subprocess.run([sys.executable, "-m", "tradestack", "capacity", "peak", "--stack", name, "--window", "2m",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)
    orders, sessions = found["figures"]["orders_per_second"]["value"], found["figures"]["sessions"]["value"]
    # the recorded rate is over a minute: 80 s of load at 20/s fill one whole minute; the toolkit's 30/s and 6
    # sessions are not in it
    assert 17 <= orders <= 23, found
    # each session holds one connection to a site's load balancer (one reconnect at most would count twice)
    assert 10 <= sessions <= 11, found
    toolkit_sessions = max(float(r["value"][1]) for u in watched["urls"]
                           for r in _query(u, "max_over_time(tradestack:toolkit_sessions[3m])"))
    assert toolkit_sessions >= 6
