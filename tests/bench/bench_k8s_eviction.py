"""Benchmark: a site's Kubernetes node lost (drill `site-node-loss`) on the kubernetes substrate, at lab.yaml's
peak, with tradestack's eviction settings (pods tolerate a NotReady or unreachable node for 5 s) and with
Kubernetes' default (300 s).

Prints per run what Kubernetes did (time to the node NotReady, to its pods' eviction, to a ready replacement)
and what clients saw (recovery, orders not served at once, acknowledged orders lost). With the default, the node
stays lost for 420 s so that the eviction can be seen at all. The last report of each is kept in
tests/bench/results/site-node-loss[-default]/. Brings up and deploys its own stack under run-unique names and
removes it after; needs root; about 20 min.

Run: sudo .venv/bin/python tests/bench/bench_k8s_eviction.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import yaml

from tradestack.adapters.kube import Cluster
from tradestack.drills import engine, files, report
from tradestack.kubernetes.workloads import DEFAULT_EVICTION_S, NAMESPACE
from tradestack.substrates import registry

from benchstack import deployed_stack

RESULTS = Path(__file__).resolve().parent / "results"
SITE = "hk1"
DEFAULT_HOLD_S = 420   # NotReady (~50 s) + 300 s of toleration + time to see it


def _line(label: str, result: engine.DrillResult) -> str:
    figs = result.figures
    k8s = (figs.kubernetes.get(SITE) if figs else None) or {}
    rec = result.reconciliation or {}

    def s(v: float | None) -> str:
        return "not within the drill" if v is None else f"{v:.1f} s"
    lost = sum(rec.get(k, {}).get("count", 0) for k in ("acked_missing", "acked_id_mismatch")) if rec else None
    return (f"{label}: verdict {result.verdict}; NotReady {s(k8s.get('not_ready_s'))}, evicted "
            f"{s(k8s.get('evicted_s'))}, replacement ready {s(k8s.get('replacement_ready_s'))}; clients recovered "
            f"{s(figs.recovery_s if figs else None)}, {figs.client_errors if figs else '?'} of "
            f"{figs.orders if figs else '?'} orders not served at once, acknowledged orders lost {lost}")


def _default_tolerations(stack: str) -> None:
    """Kubernetes' own eviction settings on SITE's gateways (what a Deployment gets when it says nothing)."""
    cluster = registry.open_stack(stack).clusters.sites()[SITE]
    with Cluster(cluster.kubeconfig, SITE) as api:
        tolerations = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_EVICTION_S}
                       for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
        api.apps.patch_namespaced_deployment("gateway", NAMESPACE,
                                             {"spec": {"template": {"spec": {"tolerations": tolerations}}}})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pods = api.pods(NAMESPACE)
            d = {x.name: x for x in api.deployments(NAMESPACE)}["gateway"]
            if d.ready == d.replicas and len(pods) == d.replicas:
                return
            time.sleep(1)
        raise SystemExit("the gateways did not roll out with the default tolerations")


def main() -> None:
    print(f"{dt.date.today()}: site-node-loss on the kubernetes substrate (lab.yaml at peak), site {SITE}")
    with deployed_stack("kb", kind="kubernetes") as stack:
        ours = engine.run(engine.plan(files.resolve("site-node-loss"), stack))
        report.write(ours.to_dict(), RESULTS / "site-node-loss")
        print(_line("tradestack's tolerations (5 s)", ours), flush=True)

        _default_tolerations(stack)
        drill = files.resolve("site-node-loss")
        doc = drill.model_dump(mode="json")
        doc["faults"][0]["duration_s"] = DEFAULT_HOLD_S
        doc["timing"]["recovery_s"] = 30
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "site-node-loss-default.yaml"
            path.write_text(yaml.safe_dump(doc))
            default = engine.run(engine.plan(files.load_drill(path), stack))
        report.write(default.to_dict(), RESULTS / "site-node-loss-default")
        print(_line(f"Kubernetes' default ({DEFAULT_EVICTION_S} s)", default), flush=True)


if __name__ == "__main__":
    main()
