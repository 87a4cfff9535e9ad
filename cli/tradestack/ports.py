"""The ports the trading stack's programs listen on: one table that the playbooks are given (deploy variables),
the substrates' probes, the audit's controls, the clusters' workloads and the services' own defaults read.

A port changed here changes everywhere at the next deploy; nothing else in the project names one of these.
"""

from __future__ import annotations

ORDERS = 8080          # clients' orders: each site's load balancers (VIP and every gateway host); a gateway pod
GATEWAY = 8081         # each gateway process on its host's LAN address (behind the site's load balancers)
ROUTER = 8090          # each router's API (venues and their breakers, heartbeats)
VENUE = 9001           # an upstream venue simulator's order port
VENUE_ADMIN = 9101     # its admin API (fault modes)
POSTGRES = 5432
DB_PROXY = 5433        # local HAProxy to the Patroni leader: the gateways' and routers' database
PATRONI = 8008         # Patroni's REST API (/primary, /cluster)
ETCD_CLIENT = 2379
ETCD_PEER = 2380
HAPROXY_METRICS = 8405     # each HAProxy's Prometheus page (its backends, and the sessions it saw per origin)
PROMETHEUS = 9090          # each site's Prometheus (monitoring hosts)
ALERTMANAGER = 9093        # each site's Alertmanager (monitoring hosts)
ALERTMANAGER_CLUSTER = 9094  # Alertmanagers' gossip with each other (one notification per alert, not one per site)
ALERT_WEBHOOK = 9095       # the clients host: where a drill hears what Alertmanager sent the on-call
GATEWAY_NODE_PORT = 30080   # a cluster's gateway Service on every node: where the sites' load balancers send


def playbook_vars() -> dict[str, int]:
    """The ports as the playbooks' roles name them (their group_vars and defaults name none)."""
    return {"haproxy_orders_port": ORDERS, "gateway_port": GATEWAY, "router_port": ROUTER, "venue_port": VENUE,
            "venue_admin_port": VENUE_ADMIN, "postgres_port": POSTGRES, "haproxy_db_port": DB_PROXY,
            "patroni_restapi_port": PATRONI, "etcd_client_port": ETCD_CLIENT, "etcd_peer_port": ETCD_PEER,
            "haproxy_metrics_port": HAPROXY_METRICS, "prometheus_port": PROMETHEUS,
            "alertmanager_port": ALERTMANAGER, "alertmanager_cluster_port": ALERTMANAGER_CLUSTER,
            "alert_webhook_port": ALERT_WEBHOOK}
