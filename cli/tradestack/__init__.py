"""tradestack: deploy, break and audit a broker's multi-datacenter trading stack."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradestack")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
