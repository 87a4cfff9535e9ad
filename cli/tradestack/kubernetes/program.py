"""The Pulumi program that applies the trading services to each site's cluster (through Pulumi's Kubernetes
provider, one provider per cluster), from plain manifests decided by `workloads.py`.

Config: `tradestack:topology` (path), `tradestack:clusters` (JSON: site -> kubeconfig path), `tradestack:image`
(the trading services' image), `tradestack:evictionSeconds`, `tradestack:awaitReady` (default true: an apply
waits for every replica to be ready), and the secret `tradestack:serviceConfigs`
(JSON: site -> service -> configuration text; it holds the database password).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi

from ..topology import load_topology
from .workloads import EVICTION_S, site_manifests


def program() -> None:
    import pulumi_kubernetes as k8s  # loads only when the program runs

    config = pulumi.Config("tradestack")
    topology = load_topology(config.require("topology"))
    clusters: dict[str, str] = json.loads(config.require("clusters"))
    image = config.require("image")
    eviction_s = config.get_int("evictionSeconds") or EVICTION_S
    await_ready = config.get_bool("awaitReady") is not False
    configs = config.require_secret("serviceConfigs").apply(json.loads)
    applied: dict[str, Any] = {}
    for site, kubeconfig in sorted(clusters.items()):
        provider = k8s.Provider(f"cluster-{site}", kubeconfig=pulumi.Output.secret(Path(kubeconfig).read_text()),
                                enable_server_side_apply=True)
        objects = configs.apply(lambda c, site=site: site_manifests(topology, site, image, c.get(site, {}),
                                                                    eviction_s, await_ready))
        k8s.yaml.v2.ConfigGroup(f"site-{site}", objs=objects, opts=pulumi.ResourceOptions(provider=provider))
        applied[site] = pulumi.Output.unsecret(objects.apply(
            lambda objs: sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs)))
    pulumi.export("applied", applied)
