"""What one replica of a service asks of its node, from the capacity the topology declares for it: the CPU per
order measured here times its declared orders/s, and memory for its declared sessions."""

from __future__ import annotations

from dataclasses import dataclass

from .model import Topology

# CPU milliseconds per acknowledged order, measured on the lab at 200 orders/s (README "Measured here")
CPU_MS_PER_ORDER = {"gateway": 1.5, "router": 2.4}
BASE_CPU_M = 50              # an idle service's event loop, metrics and probes
BASE_MEMORY_MI = 96          # Python with the stack's libraries loaded
SESSION_KIB = 64             # per declared concurrent session (connection, buffers)


@dataclass(frozen=True)
class Resources:
    cpu_m: int
    memory_mi: int


def requests(topology: Topology, service: str) -> Resources:
    """What one replica asks for: its declared capacity at the measured CPU cost per order."""
    svc = next(s for s in topology.services if s.name == service)
    orders = float(svc.capacity.get("orders_per_second", 0))
    sessions = float(svc.capacity.get("sessions", 0))
    cpu = BASE_CPU_M + orders * CPU_MS_PER_ORDER.get(service, 2.0)
    memory = BASE_MEMORY_MI + sessions * SESSION_KIB / 1024
    return Resources(int(round(cpu)), int(round(memory)))
