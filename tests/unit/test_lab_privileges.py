"""Without root or CAP_NET_ADMIN the lab refuses with one line, before Pulumi starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tradestack.cli.app import app
from tradestack.exitcodes import ExitCode
from tradestack.lab import privileges

pytestmark = pytest.mark.unit


def test_stack_up_without_root_exits_3_with_one_line(monkeypatch, lab_yaml):
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(privileges, "effective_caps", lambda: 0)
    started = []
    monkeypatch.setattr("tradestack.adapters.pulumi.PulumiStack", lambda *a, **k: started.append(1))
    r = CliRunner().invoke(app, ["stack", "up", "--topology", str(lab_yaml)])
    assert r.exit_code == ExitCode.ENVIRONMENT
    assert r.stderr.strip() == ("cannot run here: the lab needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) "
                                "to create network namespaces; run it with sudo")
    assert started == []


def test_capabilities_are_enough_without_root(monkeypatch):
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(privileges, "effective_caps",
                        lambda: (1 << privileges.CAP_NET_ADMIN) | (1 << privileges.CAP_SYS_ADMIN))
    privileges.require_net_admin()
