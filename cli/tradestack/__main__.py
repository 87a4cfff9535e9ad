"""`python -m tradestack` is the same as the `tradestack` console script (used to start services)."""

from .cli.app import main

main()
