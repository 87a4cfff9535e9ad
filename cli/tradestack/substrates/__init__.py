"""Where a deployed stack runs, behind one interface (base.py), picked by the stack's own record (registry.py)."""

from .base import (AccessFiles, Actuator, FaultRefused, Host, HostTraits, Process, Substrate,
                   SubstrateError)
from .registry import KINDS, kind_of, open_stack

__all__ = ["AccessFiles", "Actuator", "FaultRefused", "Host", "HostTraits", "KINDS", "Process", "Substrate",
           "SubstrateError", "kind_of", "open_stack"]
