"""`python -m tradestack.refstack KIND --config FILE`: a component without the CLI (and its dependencies), as the
trading services' container image runs it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .service import KINDS, serve_component


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradestack.refstack", description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--config", "-c", type=Path, required=True, help="YAML or JSON configuration file")
    parser.add_argument("--instance", help="this instance's name, where replicas share one configuration file")
    args = parser.parse_args(argv)
    try:
        serve_component(args.kind, args.config, args.instance)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
