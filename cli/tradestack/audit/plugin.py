"""The pytest plugin behind `tradestack audit run`: control markers, the fleet of testinfra hosts,
evidence capture, and one result per (control, target) written for the reports.

testinfra hosts come from the stack's Ansible inventory through testinfra's ansible backend, which
reuses its native SSH backend (fast) with the inventory's key, user and known_hosts, rather than
pushing every command through Ansible.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra

CONTEXT_OPTION = "--audit-context"
EXCERPT = 600


class Context:
    """What the runner tells the checks: the stack, its inventory and topology facts, where to write."""

    def __init__(self, path: Path):
        self.data: dict[str, Any] = json.loads(path.read_text())
        self.inventory: dict[str, Any] = self.data["hosts"]
        self._hosts: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def names(self, service: str | None = None, site: str | None = None) -> list[str]:
        return sorted(n for n, hv in self.inventory.items()
                      if (service is None or hv["service"] == service) and (site is None or hv.get("site") == site))

    def host(self, name: str) -> Any:
        """A testinfra host over SSH, from the inventory (cached per worker)."""
        if name not in self._hosts:
            self._hosts[name] = testinfra.get_host(f"ansible://{name}",
                                                   ansible_inventory=self.data["inventory_file"])
        return self._hosts[name]

    def local(self) -> Any:
        return testinfra.get_host("local://")


class Evidence:
    """What a check looked at: each command (or file) with host, time and an excerpt of the output."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def run(self, host: Any, name: str, command: str) -> Any:
        try:
            result = host.run(command)
        except RuntimeError as exc:  # testinfra's SSH backend: the host could not be reached at all
            text = str(exc)
            detail = text.split("_stderr=", 1)[-1].strip("b')").replace("\\r\\n", " ") if "_stderr=" in text else text
            self.items.append({"host": name, "at": time.time(), "command": command, "rc": 255,
                               "output": detail[-EXCERPT:]})
            raise AssertionError(f"{name} is unreachable over SSH: {detail.strip()[:200]}") from None
        self.items.append({"host": name, "at": time.time(), "command": command, "rc": result.rc,
                           "output": (result.stdout + result.stderr)[-EXCERPT:]})
        return result

    def note(self, host: str, what: str, value: Any) -> None:
        self.items.append({"host": host, "at": time.time(), "command": what, "rc": None,
                           "output": str(value)[-EXCERPT:]})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(CONTEXT_OPTION, action="store", help="JSON context written by `tradestack audit run`")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control(id): the compliance control this test implements")
    config.addinivalue_line("markers", "targets(argname, pick): parametrize argname with pick(context)")
    path = config.getoption(CONTEXT_OPTION)
    if path:
        config.stash[_CONTEXT] = Context(Path(path))
        if not hasattr(config, "workerinput"):  # the controller (or the only process) collects results
            config.pluginmanager.register(Collector(Path(config.stash[_CONTEXT]["results_file"])), "tradestack-audit")


_CONTEXT = pytest.StashKey[Context]()


@pytest.fixture(scope="session")
def audit(request: pytest.FixtureRequest) -> Context:
    return request.config.stash[_CONTEXT]


@pytest.fixture
def evidence(record_property: Any) -> Any:
    ev = Evidence()
    yield ev
    record_property("evidence", json.dumps(ev.items))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Targets from the inventory: `hostname` over a service's hosts, `site` over the sites, `drill` over
    the catalogue; which ones a check wants is said by its `targets` marker."""
    context = metafunc.config.stash.get(_CONTEXT, None)
    marker = metafunc.definition.get_closest_marker("targets")
    if context is None or marker is None:
        return
    argname, values = marker.args[0], marker.args[1](context)
    metafunc.parametrize(argname, values, ids=[str(v) for v in values])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    context = config.stash.get(_CONTEXT, None)
    if context is None:
        return
    wanted = set(context["controls"])
    keep = [i for i in items if (m := i.get_closest_marker("control")) and m.args[0] in wanted]
    for item in keep:  # user properties travel with reports (xdist) and into the JUnit XML
        item.user_properties.append(("control", item.get_closest_marker("control").args[0]))
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class Collector:
    """One record per test: control, target, outcome, reason, evidence (xdist sends reports here too).
    The outcome comes from the call (or a setup that skipped or failed); the evidence from the teardown
    report, which is the first to carry what the `evidence` fixture recorded when it finished."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when == "call" or (report.when == "setup" and (report.skipped or report.failed)):
            reason = ""
            if report.skipped and isinstance(report.longrepr, tuple):
                reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            elif report.failed:
                reason = _failure_text(report)
            self.records[report.nodeid] = {
                "nodeid": report.nodeid, "control": props.get("control"),
                "target": report.nodeid.split("[", 1)[1].rstrip("]") if "[" in report.nodeid else "",
                "outcome": report.outcome, "reason": reason, "duration_s": round(report.duration, 3),
                "evidence": json.loads(props.get("evidence", "[]"))}
        elif report.when == "teardown" and report.nodeid in self.records and "evidence" in props:
            self.records[report.nodeid]["evidence"] = json.loads(props["evidence"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.write_text(json.dumps(list(self.records.values()), indent=1))


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        first = str(crash.message).splitlines()[0] if crash.message else "failed"
        return first.removeprefix("AssertionError: ")[:400]
    return str(report.longrepr).strip().splitlines()[-1][:400]
