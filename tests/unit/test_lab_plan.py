"""The lab plan is pure: names, addresses and the fault map are checked without root."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tradestack.errors import InputError
from tradestack.lab.daemons import bird_config
from tradestack.lab.plan import LAB_RANGE, plan_lab
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


@pytest.fixture(scope="module")
def plan():
    return plan_lab(load_topology(TOPOLOGIES / "lab.yaml"), "lab")


def test_every_name_is_prefixed_and_interfaces_fit_ifnamsiz(plan):
    assert all(n.name.startswith("lab-") for n in plan.namespaces)
    ends = [e for lk in plan.links for e in (lk.a, lk.b)]
    assert all(len(e.ifname) <= 15 for e in ends)
    assert all(e.ifname.startswith("lab") for e in ends if e.netns is None)  # root-namespace ones
    assert plan.mgmt_bridge == "lab-mgmt"


def test_addresses_only_from_the_benchmark_range(plan):
    addrs = [e.address for lk in plan.links for e in (lk.a, lk.b) if e.address]
    addrs += [b.address for b in plan.bridges if b.address]
    assert addrs and all(ipaddress.ip_interface(a).ip in LAB_RANGE for a in addrs)
    assert len(set(addrs)) == len(addrs)


def test_hosts_per_placement(plan):
    names = {h.netns for h in plan.hosts}
    assert len(names) == 16  # 4 gateways + 2 routers + 2 databases + 3 consensus + 2 monitoring + 2 venues + clients
    assert "lab-sz1-gateway-2" in names and "lab-sz1-gateway-3" not in names and "lab-wit-consensus-1" in names
    outside = {h.netns: (h.service, h.lan_ip, h.gateway) for h in plan.hosts if h.site is None}
    assert outside == {"lab-upstream-exchange": ("venue", "198.19.16.1", None),
                       "lab-upstream-overnight-ats": ("venue", "198.19.17.1", None),
                       "lab-clients": ("loadgen", "198.19.0.1", None)}


def test_fault_map_covers_every_risk_group(plan):
    assert len(plan.fault_map) == 16
    ct = {lk["link"] for lk in plan.fault_map["carrier:ct"]["links"]}
    assert {"uplink-sz1-ct", "uplink-hk1-ct", "ix-ct", "clients-ct"} <= ct
    tko = plan.fault_map["facility:cm-tko"]["links"]
    assert [lk["link"] for lk in tko] == ["uplink-hk1-cm"]
    power = plan.fault_map["power:hk-grid"]
    assert "lab-hk1-edge" in power["namespaces"] and "lab-hk1-orderdb-1" in power["hosts"]


def test_inventory_groups(plan):
    inv = plan.inventory(load_topology(TOPOLOGIES / "lab.yaml"))
    groups = inv["all"]["children"]
    assert set(groups["site_wit"]["hosts"]) == {"lab-wit-consensus-1"}
    assert len(groups["gateway"]["hosts"]) == 4 and "role_standby" in groups
    host = inv["all"]["hosts"]["lab-sz1-orderdb-1"]
    assert host["site"] == "sz1" and host["lan_address"].startswith("198.18.1.")
    assert set(groups["venue"]["hosts"]) == {"lab-upstream-exchange", "lab-upstream-overnight-ats"}
    assert set(groups["outside"]["hosts"]) == {*groups["venue"]["hosts"], "lab-clients"}
    assert inv["all"]["hosts"]["lab-upstream-exchange"]["upstream"] == "exchange"
    assert "site" not in inv["all"]["hosts"]["lab-clients"]


def test_two_stacks_get_different_management_networks():
    t = load_topology(TOPOLOGIES / "lab.yaml")
    assert plan_lab(t, "lab").mgmt_network != plan_lab(t, "lab2").mgmt_network


def test_bad_stack_name():
    with pytest.raises(InputError, match="stack name"):
        plan_lab(load_topology(TOPOLOGIES / "lab.yaml"), "Lab-Stack-Long")


def test_bird_config_edges_are_never_transit(plan):
    edge = next(r for r in plan.routers if r.netns == "lab-sz1-edge")
    text = bird_config(edge, "/tmp/x.log")
    assert "if source = RTS_DEVICE then accept" in text and "bfd on" in text
    assert text.count("protocol bgp") == 2


def test_edge_routers_are_reachable_for_management_after_every_host_and_get_nothing_deployed(plan, lab_yaml):
    assert [e.netns for e in plan.edges] == ["lab-sz1-edge", "lab-hk1-edge", "lab-wit-edge"]
    host_ips = [ipaddress.ip_address(h.mgmt_ip) for h in plan.hosts]
    assert all(ipaddress.ip_address(e.mgmt_ip) > max(host_ips) for e in plan.edges)  # hosts keep their addresses
    assert any(lk.key == "mgmt-lab-sz1-edge" and lk.a.ifname == "mgmt0" for lk in plan.links)
    assert not any(name.endswith("-edge") for name in plan.inventory(load_topology(lab_yaml))["all"]["hosts"])


def test_clusters_only_where_asked_and_only_in_sites_that_run_a_stateless_service(plan):
    topology = load_topology(TOPOLOGIES / "lab.yaml")
    assert plan.clusters == []
    with_clusters = plan_lab(topology, "lab", clusters=True)
    assert [c.site for c in with_clusters.clusters] == ["sz1", "hk1"]  # wit runs only a consensus member
    # nothing else moves: every host keeps its addresses, the fault map is the same
    assert with_clusters.hosts == plan.hosts and with_clusters.edges == plan.edges
    assert with_clusters.fault_map == plan.fault_map
    sz1 = with_clusters.clusters[0]
    assert sz1.netns == "lab-sz1-k8s" and sz1.node_ip == "198.18.1.250" and sz1.gateway == "198.18.1.1"
    # a second node: a cluster whose every node is lost evicts nothing
    [(ns2, ip2, mgmt2)] = sz1.workers
    assert ns2 == "lab-sz1-k8s2" and ip2 == "198.18.1.251"
    assert {n.name for n in with_clusters.namespaces if n.role == "k8s"} == {
        "lab-sz1-k8s", "lab-sz1-k8s2", "lab-hk1-k8s", "lab-hk1-k8s2"}
    ranges = [ipaddress.ip_network(c.pod_cidr) for c in with_clusters.clusters] + \
             [ipaddress.ip_network(c.service_cidr) for c in with_clusters.clusters]
    assert all(r.subnet_of(LAB_RANGE) for r in ranges)
    assert not any(a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1:])
    mgmt = [h.mgmt_ip for h in [*with_clusters.hosts, *with_clusters.edges]] + \
        [ip for c in with_clusters.clusters for ip in (c.mgmt_ip, *(w[2] for w in c.workers))]
    assert len(set(mgmt)) == len(mgmt)
    ends = [e for lk in with_clusters.links for e in (lk.a, lk.b)]
    assert all(len(e.ifname) <= 15 for e in ends)
