"""Thin entry point: the program lives in tradestack.kubernetes.program so the CLI can run it inline."""

from tradestack.kubernetes.program import program

program()
