"""Shared fixtures. Tier markers: every test module sets `pytestmark` to unit or integration."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "infra" / "topologies"


@pytest.fixture
def lab_yaml() -> Path:
    return TOPOLOGIES / "lab.yaml"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the user's ~/.tradestack from a test (nor use their evidence key: pytest_configure)."""
    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path_factory.mktemp("tradestack-home")))


def pytest_configure(config: pytest.Config) -> None:
    """Output is laid out as for a pipeline (no terminal, no COLUMNS), whoever runs the tests: pytest-xdist's
    workers run with COLUMNS=80 in their environment, which would fold the CLI's tables differently. Here, before any test
    module imports the CLI (its consoles read the width once)."""
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    # one evidence key per test process, made on first use, as one operator signs a session lab's records: set
    # here, before any fixture of any scope runs a command that keeps a record (never the user's own key)
    config.stash[_evidence_dir] = tempfile.mkdtemp(prefix="tradestack-evidence-key-")
    os.environ["TRADESTACK_EVIDENCE_KEY"] = os.path.join(config.stash[_evidence_dir], "evidence_ed25519")
    if not hasattr(config, "workerinput") and config.getini("judge_leftovers"):  # xdist's controller, or the only process
        config.stash[_found_at_start] = machine_wide()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("judge_leftovers", type="bool", default=True,
                  help="fail the run when it leaves behind what a lab makes (off only for a run nested in a test that "
                       "shares the machine with other workers, whose things it would count as its own)")


_evidence_dir = pytest.StashKey[str]()


# Nothing a run makes outlives it: what this machine holds of the kinds a lab makes (network namespaces, network
# links, overlay and namespace mounts, booted machines) is read when the run starts and again when it ends, after
# every worker's fixtures have torn down; anything new fails the run, named.
_found_at_start = pytest.StashKey[frozenset[str]]()


def machine_wide() -> frozenset[str]:
    found = {f"network namespace {p.name}" for p in Path("/run/netns").glob("*")}
    found |= {f"network link {p.name}" for p in Path("/sys/class/net").glob("*")}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        kind, point = line.split()[2], line.split()[1]
        if kind == "overlay" or point.startswith("/run/netns/"):
            found.add(f"mount {point}")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn"):
            name = next((a.decode().split("=", 1)[1] for a in argv if a.startswith(b"--machine=")), proc.name)
            found.add(f"booted machine {name}")
    return frozenset(found)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _found_at_start not in config.stash:
        return
    left = sorted(machine_wide() - config.stash[_found_at_start])
    if left:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        message = (f"this run left {len(left)} thing(s) behind on this machine (made during it, still there after "
                   f"every fixture's tear-down): {', '.join(left[:20])}")
        if reporter is not None:
            reporter.write_sep("=", "left behind", red=True)
            reporter.write_line(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


TIERS = ("unit", "integration")


# The modules whose tests use the session lab (tests/integration/conftest.py: deployed once, its tests build on
# each other). Checked below against the fixtures their tests request, so the list cannot drift.
SESSION_LAB = frozenset(f"tests/integration/{m}.py" for m in (
    "test_alerting", "test_audit", "test_deploy", "test_drills", "test_evidence", "test_hosts_substrate", "test_lab",
    "test_readme_lab", "test_ssh"))


def _uses_session_lab(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0] in SESSION_LAB


# make test's two workers each run one group of modules, whole and in this order (pytest_xdist_make_scheduler):
# - the lab's worker: the session lab's modules, then AFTER_THE_SESSION_LAB's (the kubernetes substrate's own lab
#   and clusters: heavy deploys and four drills at peak);
# - the other: FIRST's (the deploy onto booted machines, heavy, beside the session lab's deploy and audits, then
#   the catalogue at peak on them), then the reference stack on loopback and the unit tests.
# Balanced by measurement: with the kubernetes module beside the session lab (run 18, docs/measured.md) the lab's
# worker had 17.5 min of tests and the other 31.7.
AFTER_THE_SESSION_LAB = frozenset({"tests/integration/test_k8s_substrate.py"})
FIRST = frozenset({"tests/integration/test_machines.py"})


def _in_the_labs_worker(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path in SESSION_LAB or path in AFTER_THE_SESSION_LAB


def _run_order(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return 3 if path in AFTER_THE_SESSION_LAB else 2 if path in SESSION_LAB else 0 if path in FIRST else 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `-m unit` never silently drops one; every module that uses the
    session lab is in SESSION_LAB."""
    untiered = [item.nodeid for item in items if sum(1 for t in TIERS if item.get_closest_marker(t)) != 1]
    if untiered:
        raise pytest.UsageError("tests without exactly one tier marker (unit or integration): "
                                + ", ".join(untiered[:10]))
    unlisted = sorted({item.nodeid.split("::", 1)[0] for item in items
                       if "lab" in getattr(item, "fixturenames", ()) and not _uses_session_lab(item.nodeid)})
    if unlisted:
        raise pytest.UsageError(f"modules using the session lab but not in SESSION_LAB (tests/conftest.py): "
                                f"{', '.join(unlisted)}")
    items.sort(key=_run_order)  # stable: collection order within each


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` (as `make test` runs, with -n 2): two groups, each run whole and in order by one worker
    (above: the session lab's modules and then the kubernetes substrate's in one; the booted machines, the reference
    stack on loopback and the unit tests in the other). Tests at peak load still have the machine to
    themselves (`peak` and `heavy` marks, below). Done here rather than with xdist_group marks,
    which pytest-xdist 3.8 no longer honours under pytest 9.2 (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BesideTheLab(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "the lab's" if _in_the_labs_worker(nodeid) else "beside the lab"

    return BesideTheLab(config, log)


# One machine, two workers. A test marked `peak` asserts something that depends on how fast the machine answers
# (latency and throughput against bounds, an eviction within seconds, and every drill whose checks it requires
# include the load's: sessions held and orders sent at 95 % of the peak before the fault and after the restore,
# which clients slowed by a deploy beside them miss: make test saw 303 of 320 sessions held), so it needs the
# machine to itself; a test marked `heavy` keeps the CPU busy but asserts nothing timed (deploys, audits, clusters
# coming up, a drill that is interrupted or meant to fail), so heavy tests may run beside each other but never
# beside a peak test.
# The worker's whole test protocol (set-up of the fixtures it starts, call, tear-down) holds the share: an
# exclusive or shared flock(2) on one file of this run, made by the controller and handed to its workers. Without
# pytest-xdist there is one process and nothing to share.
MACHINE_LOCK = "tradestack_machine_lock"
_lock_file = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist's controller, once per worker: every worker of this run gets the same new lock file."""
    stash = node.config.stash
    if _lock_file not in stash:
        fd, stash[_lock_file] = tempfile.mkstemp(prefix="tradestack-machine-", suffix=".lock")
        os.close(fd)
    node.workerinput[MACHINE_LOCK] = stash[_lock_file]


# An internal error of a worker (an exception out of a hook, outside any test) reaches the controller first as
# its own INTERNALERROR and then as pytest-xdist's "assert not crashitem", whose traceback is all a pipeline's tail
# shows (make test, stop 43). Each one's last lines are said again as the run's very last output.
_INTERNAL_ERRORS: list[str] = []


def pytest_internalerror(excrepr, excinfo) -> None:
    lines = [line for line in str(excrepr).splitlines() if line.strip()]
    _INTERNAL_ERRORS.append("\n".join(lines[-12:]))


def pytest_unconfigure(config: pytest.Config) -> None:
    for n, text in enumerate(_INTERNAL_ERRORS, 1):
        sys.stderr.write(f"\n== internal error {n} of this run, its last lines ==\n{text}\n")
    if _lock_file in config.stash:
        Path(config.stash[_lock_file]).unlink(missing_ok=True)
    if _evidence_dir in config.stash:
        shutil.rmtree(config.stash[_evidence_dir], ignore_errors=True)


@contextmanager
def machine_share(path: str, mode: int):
    """Hold the machine lock at `path` in `mode` (fcntl.LOCK_EX or LOCK_SH); yields the seconds waited for it."""
    with open(path, "rb") as lock:
        asked = time.monotonic()
        fcntl.flock(lock, mode)
        try:
            yield time.monotonic() - asked
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# The lab's worker runs the run's longest chain (make test ends when it does); the other group has minutes to
# spare. So when both workers are busy at once (two heavy tests, or a peak test of the lab beside unit tests) the
# CPU goes to the lab's worker first: the other worker, and every process it starts (the booted machines among
# them), runs at this niceness.
BESIDE_THE_LAB_NICE = 5


def _yield_to_the_lab(beside: bool) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, BESIDE_THE_LAB_NICE if beside else 0)
    except PermissionError:  # back to 0 needs root; a user's run mixing the groups keeps the lower priority
        pass


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Outside pytest-timeout's timer: waiting for the other worker's test is not this test's time."""
    mode = (fcntl.LOCK_EX if item.get_closest_marker("peak")
            else fcntl.LOCK_SH if item.get_closest_marker("heavy") else None)
    workerinput = getattr(item.config, "workerinput", {})
    if MACHINE_LOCK in workerinput:
        _yield_to_the_lab(not _in_the_labs_worker(item.nodeid))
    if mode is None or MACHINE_LOCK not in workerinput:
        return (yield)
    with machine_share(workerinput[MACHINE_LOCK], mode) as waited:
        item.user_properties.append(("machine_wait_s", f"{waited:.1f}"))
        return (yield)
