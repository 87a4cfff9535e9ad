"""capacity check --live: ready replicas instead of declared placement, and requests against capacity."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.capacity.live import LiveError, Observed, check_live, observed
from tradestack.topology import load_topology
from tradestack.topology.requests import requests

pytestmark = pytest.mark.unit

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml")


def _as_declared(**changes: int) -> list[Observed]:
    """What a healthy deployment reports; `changes` like hk1_gateway=1 set one site's ready replicas."""
    out = []
    for svc in TOPOLOGY.services:
        if svc.kind == "stateless":
            for site, n in svc.placement.items():
                out.append(Observed(site, svc.name, changes.get(f"{site}_{svc.name}", n),
                                    requests(TOPOLOGY, svc.name).cpu_m))
    return out


def _failing_services(live) -> set[str]:
    report = live.report
    return {report.services[j].name for i in report.failing for j in range(len(report.services))
            if report.reasons[i, j]}


def test_a_healthy_deployment_passes_every_failure_scenario():
    live = check_live(TOPOLOGY, _as_declared())
    assert live.ok and live.problems == [] and live.ready == live.declared


def test_a_site_scaled_below_what_peak_needs_fails_naming_the_service():
    # lab.yaml: 2 gateways per site at 60/s carry 120/s, exactly peak x headroom when the other site is lost
    live = check_live(TOPOLOGY, _as_declared(hk1_gateway=1))
    assert not live.ok and live.ready["gateway"] == {"sz1": 2, "hk1": 1}
    assert _failing_services(live) == {"gateway"}


def test_requests_below_declared_capacity_and_missing_services_are_problems():
    observed = [o for o in _as_declared() if not (o.site == "hk1" and o.service == "router")]
    observed = [Observed(o.site, o.service, o.ready, 50) if (o.site, o.service) == ("sz1", "gateway") else o
                for o in observed]
    live = check_live(TOPOLOGY, observed)
    messages = [p.message for p in live.problems]
    assert "gateway in sz1 requests 50m CPU per replica; its declared capacity needs 140m" in messages
    assert "router is not deployed in hk1's cluster (the topology places 1)" in messages
    assert not live.ok


def test_services_the_clusters_do_not_run_keep_their_placement_and_are_not_looked_for():
    # the kubernetes substrate runs only the gateways in its clusters; routers stay on hosts
    gateways = [o for o in _as_declared() if o.service == "gateway"]
    live = check_live(TOPOLOGY, gateways, clustered=["gateway"])
    assert live.ok and live.problems == [] and set(live.ready) == {"gateway"}
    short = check_live(TOPOLOGY, [o for o in gateways if o.site == "sz1"], clustered=["gateway"])
    assert [p.message for p in short.problems] == ["gateway is not deployed in hk1's cluster (the topology places 2)"]
    assert _failing_services(short) == {"gateway"}  # hk1 counted at 0 ready, never its declared 2


def test_cpu_quantities_read_as_millicores():
    from tradestack.adapters.kube import millicores

    assert [millicores(q) for q in ("140m", "0.5", "2", None, "")] == [140, 500, 2000, None, None]


def test_what_the_clusters_run_is_read_from_the_substrates_cluster_view():
    views = {"sz1": {"nodes": {"n1": True}, "error": None, "expected": ["gateway"],
                     "services": {"gateway": {"replicas": 3, "ready": 2, "disruptions_allowed": 1, "cpu_request_m": 170}}},
             "hk1": {"nodes": {}, "error": None, "expected": ["gateway"],
                     "services": {"gateway": {"replicas": 2, "ready": 2, "disruptions_allowed": 1, "cpu_request_m": None}}}}
    assert observed(views) == [Observed("hk1", "gateway", 2, None), Observed("sz1", "gateway", 2, 170)]


def test_a_cluster_that_did_not_answer_is_an_error_not_a_site_without_replicas():
    views = {"sz1": {"nodes": {}, "services": {}, "expected": ["gateway"], "error": "connection refused"}}
    with pytest.raises(LiveError, match="site sz1's cluster did not answer: connection refused"):
        observed(views)
