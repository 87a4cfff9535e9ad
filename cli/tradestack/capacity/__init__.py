"""Failure-domain capacity: does any set of failed risk groups leave a service below peak?"""

from .check import check_capacity
from .report import CapacityReport, MetricResult, Reason, ScenarioResult, ServiceResult
from .scenarios import enumerate_scenarios

__all__ = [
    "CapacityReport", "MetricResult", "Reason", "ScenarioResult", "ServiceResult",
    "check_capacity", "enumerate_scenarios",
]
