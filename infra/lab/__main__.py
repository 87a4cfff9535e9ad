"""Thin entry point: the program lives in tradestack.lab.program so the CLI can run it inline."""

from tradestack.lab.program import program

program()
