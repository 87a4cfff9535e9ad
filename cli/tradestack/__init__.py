"""tradestack: deploy, break and audit a broker's multi-datacenter trading stack."""

import os
from importlib.metadata import PackageNotFoundError, version

# Before grpc (Pulumi's) is ever imported: its C core's fork handlers can crash a child forked to exec a program
# while channels are active (grpc/grpc#43055, grpcio 1.80 and later; make test saw a psql started by a process that
# had run a Pulumi program fail with "epoll_wait error: Bad file descriptor"). tradestack forks only to exec
# (ssh, ansible, psql), so it needs none of them. A user's own setting wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

try:
    __version__ = version("tradestack")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
