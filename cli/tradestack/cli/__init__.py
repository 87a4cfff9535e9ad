"""The `tradestack` command line: parses arguments and renders results; no domain logic here."""
