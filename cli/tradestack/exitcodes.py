"""Process exit codes, the contract with pipelines (documented in README and --help)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  #: everything checked passed
    FAILED = 1  #: the command ran, and what it checked did not hold (a failing scenario, a red control)
    BAD_INPUT = 2  #: unusable input: a bad file, a bad argument, an unknown name
    ENVIRONMENT = 3  #: this machine lacks something needed (root, a program, a built toolchain)
    INTERNAL = 4  #: a bug in tradestack; the traceback is in the debug log
    INTERRUPTED = 130  #: stopped by Ctrl-C / SIGTERM after cleaning up
