"""The trading services on per-site clusters as one Pulumi stack (project `tradestack-k8s`): preview, up,
refresh and destroy like every other stack."""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters.pulumi import ManagedStack, OpResult, StackSpec
from .program import program
from .workloads import EVICTION_S

PROJECT = "tradestack-k8s"


class WorkloadStack(ManagedStack):
    """`clusters`: site -> admin kubeconfig; `configs`: site -> service -> configuration text (secret)."""

    def __init__(self, name: str, topology: Path, clusters: dict[str, Path], image: str,
                 configs: dict[str, dict[str, str]], eviction_s: int = EVICTION_S, await_ready: bool = True):
        self.name = name
        config = {"tradestack:topology": str(Path(topology).resolve()),
                  "tradestack:clusters": json.dumps({s: str(Path(p).resolve()) for s, p in sorted(clusters.items())}),
                  "tradestack:image": image, "tradestack:evictionSeconds": str(eviction_s),
                  "tradestack:awaitReady": "true" if await_ready else "false"}
        self._spec = StackSpec(PROJECT, name, program, config, {"tradestack:serviceConfigs": json.dumps(configs)})

    @classmethod
    def existing(cls, name: str) -> WorkloadStack:
        """The stack as it was last applied (its configuration as stored); `exists()` tells whether there is one."""
        stack = cls.__new__(cls)
        stack.name = name
        stack._spec = StackSpec(PROJECT, name, program)
        return stack

    def forget(self) -> None:
        """Drop the stack's state, leaving the clusters as they are (they are gone, or going)."""
        self._pulumi.forget()

    def preview(self) -> OpResult:
        return self._pulumi.preview()

    def up(self, refresh: bool = False) -> OpResult:
        """`refresh`: put back what drifted (objects changed or deleted in the clusters since the last apply)."""
        return self._pulumi.up(refresh=refresh)

    def refresh(self) -> OpResult:
        return self._pulumi.refresh()

    def destroy(self) -> OpResult:
        return self._pulumi.destroy()
