"""The drill engine against an in-memory substrate: the order of its steps, that restore always runs, and that a
failed or interrupted restore is never reported as a pass."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tradestack.drills import engine, model
from tradestack.substrates import faults

from .memory_substrate import MemorySubstrate

pytestmark = pytest.mark.unit


def _drill(fault_s: float = 0.4, baseline_s: float = 0.3, recovery_s: float = 0.4, **expect: object) -> model.Drill:
    return model.Drill(name="mem-drill", description="x",
                       faults=[faults.LinkDown(kind="link-down", group="carrier:ct", at_s=0.0, duration_s=fault_s)],
                       load=model.Load(peak_fraction=1.0, sessions=2),
                       timing=model.Timing(baseline_s=baseline_s, recovery_s=recovery_s, settle_s=1),
                       expect=model.Expectations(**expect))  # type: ignore[arg-type]


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemorySubstrate:
    substrate = MemorySubstrate(tmp_path)
    from tradestack.drills import session

    for module in (engine, session):  # planning, and the run's frame
        monkeypatch.setattr(module, "open_stack", lambda name: substrate)
    return substrate


def _check(result: engine.DrillResult, name: str) -> dict:
    return next(c for c in result.checks if c["check"] == name)


def test_a_drill_loads_injects_restores_and_reconciles_in_that_order(memory):
    result = engine.run(engine.plan(_drill(), "mem"))
    assert memory.events == ["load started", "inject link-down", "restore link-down"]
    assert result.verdict == "pass", result.checks
    assert [s.name for s in result.journal.steps] == ["start load", "clients sending before any fault",
                                                      "inject: every link of risk group carrier:ct down",
                                                      "restore: link-down in memory", "steady state after the drill",
                                                      "reconcile"]
    assert all(s.ok for s in result.journal.steps)
    # the clients ran at the topology's peak, from the baseline until after the restore, and were reconciled
    assert memory.loads[0].rate == memory.topology.peak["orders_per_second"]
    assert result.figures is not None and result.figures.orders > 0
    reconciles = [(host, argv) for host, argv in memory.commands if "reconcile" in argv]
    assert [host for host, _ in reconciles] == ["mem-sz1-router-1"]  # the database vantage: a live router
    staged = str(memory.work_dir / f"{result.run_id}.reconcile.sqlite")
    assert staged in reconciles[0][1]  # a copy brought to the vantage host, never the clients' own ledger
    assert ("mem-sz1-router-1", ("put", str(memory.work_dir / f"{result.run_id}.sqlite"), staged)) in memory.commands
    assert _check(result, "acknowledged orders lost")["actual"] == 0
    assert _check(result, "the load ran as planned")["ok"] and _check(result, "the stack was watched")["ok"]
    assert _check(result, "reconciliation ran")["actual"] == f"{result.figures.orders} ledger orders reconciled"


# -- a verdict that cannot pass on nothing -----------------------------------------------------------
def _longer(**expect: object) -> model.Drill:
    """Phases long enough to see the clients' reports (twice a second) in each."""
    return _drill(fault_s=2.0, baseline_s=1.0, recovery_s=1.0, **expect)


def test_a_planned_drill_runs_on_the_stack_its_plan_opened_without_opening_it_again(memory, monkeypatch):
    """Opening a stack reads its Pulumi outputs and configuration (over a second): once per command."""
    from tradestack.drills import session

    opened = []
    for module in (engine, session):
        monkeypatch.setattr(module, "open_stack", lambda name: opened.append(name) or memory)
    result = engine.run(engine.plan(_drill(), "mem"))
    assert result.verdict == "pass" and opened == ["mem"]


def test_clients_that_cannot_start_stop_the_drill_before_it_touches_the_stack(memory):
    memory.load_faults = {"fails_to_start": True}
    result = engine.run(engine.plan(_longer(), "mem"))
    assert memory.events == ["load started"]  # no fault injected, nothing to restore
    assert result.verdict == "fail"
    assert _check(result, "the load ran as planned") == {
        "check": "the load ran as planned", "ok": False, "actual": "the clients never sent an order, so nothing was tested",
        "expected": _check(result, "the load ran as planned")["expected"]}
    step = next(s for s in result.journal.steps if s.name == "clients sending before any fault")
    assert not step.ok and "exited (rc 1) before sending an order" in step.detail
    assert _check(result, "reconciliation ran")["actual"] == "not run: the clients sent no order"
    assert not any("reconcile" in argv for _, argv in memory.commands)


def test_clients_killed_mid_fault_stop_the_drill_restore_and_fail_it_naming_the_load(memory):
    memory.load_faults = {"dies_after": 2.0}  # 1 s of baseline after they are seen sending, then 2 s of fault
    result = engine.run(engine.plan(_longer(), "mem"))
    assert memory.events == ["load started", "inject link-down", "restore link-down"]
    assert result.verdict == "fail"
    load = _check(result, "the load ran as planned")
    assert not load["ok"] and "the load generator exited (rc -9)" in load["actual"], load
    assert "while the drill still needed it" in load["actual"] and "after the restore" in load["actual"]
    assert result.journal.aborted and result.journal.aborted.startswith("the clients stopped: the load generator exited")
    restored = result.journal.marks["restored"] - result.journal.marks["injected"]
    assert restored < 1.5, restored  # restored as soon as the clients were seen dead, not after the 2 s fault


def test_clients_that_go_silent_fail_the_load_check(memory, monkeypatch):
    from tradestack.drills import clients

    monkeypatch.setattr(clients, "SILENT_S", 0.8)
    memory.load_faults = {"silent_after": 1.5}
    result = engine.run(engine.plan(_longer(), "mem"))
    load = _check(result, "the load ran as planned")
    assert not load["ok"] and "the load generator reported no progress for" in load["actual"], load
    assert result.verdict == "fail"


def test_an_observer_whose_every_probe_fails_fails_the_watch_check_and_its_figures_are_null(memory, monkeypatch):
    def broken() -> None:
        raise ConnectionError("patroni unreachable")
    monkeypatch.setattr(memory.probe, "database_leader", broken)
    result = engine.run(engine.plan(_longer(), "mem"))
    watched = _check(result, "the stack was watched")
    assert not watched["ok"] and watched["actual"].startswith("no sample of the stack was taken; ")
    assert "probe error(s), the last: ConnectionError: patroni unreachable" in watched["actual"]
    assert result.figures is not None and result.figures.no_leader_s is None and result.figures.detection_s is None
    assert result.verdict == "fail"


def test_a_database_refusing_at_reconciliation_fails_the_drill_with_the_reason(memory):
    memory.reconcile_answer = (1, json.dumps({"ok": False, "exit_code": 1,
                                              "errors": ["connection to 198.18.1.11:5433 refused"]}))
    result = engine.run(engine.plan(_longer(), "mem"))
    ran = _check(result, "reconciliation ran")
    assert not ran["ok"] and "connection to 198.18.1.11:5433 refused" in ran["actual"], ran
    assert result.verdict == "fail" and result.reconciliation is None


def test_a_missing_ledger_fails_the_drill_with_the_reason(memory):
    memory.ledger_lost = True
    result = engine.run(engine.plan(_longer(), "mem"))
    ran = _check(result, "reconciliation ran")
    assert not ran["ok"] and "ledger" in ran["actual"] and "is missing on mem-clients" in ran["actual"], ran
    assert not _check(result, "the load ran as planned")["ok"]  # and no order to judge the load by
    assert result.verdict == "fail"


def test_a_fault_slow_to_resolve_is_still_held_for_its_whole_duration_once_applied(memory, monkeypatch):
    resolve = memory.actuator

    def slow(fault):
        time.sleep(0.5)  # picking the node or link to fail, on a busy stack
        return resolve(fault)
    monkeypatch.setattr(memory, "actuator", slow)
    result = engine.run(engine.plan(_drill(), "mem"))
    injected, restored = memory.faulted
    assert restored - injected >= 0.4, (injected, restored)  # the drill's duration_s, not what was left of it
    assert result.verdict == "pass", result.checks


def test_a_failed_injection_is_still_restored_and_the_drill_fails(memory):
    memory.fail_inject = RuntimeError("nft said no")
    result = engine.run(engine.plan(_drill(), "mem"))
    assert memory.events[-1] == "restore link-down"
    assert result.verdict == "fail"
    failed = _check(result, "every step and restore succeeded")
    assert not failed["ok"] and failed["actual"] == ["inject: every link of risk group carrier:ct down"]


def test_a_failed_restore_fails_the_drill_whatever_the_clients_saw(memory):
    memory.fail_restore = True
    result = engine.run(engine.plan(_drill(), "mem"))
    assert result.verdict == "fail"
    assert _check(result, "every step and restore succeeded")["actual"] == ["restore: link-down in memory"]
    assert _check(result, "acknowledged orders lost")["ok"]  # clean clients do not hide a failed rollback


def test_an_interrupt_during_the_fault_restores_and_reports_interrupted_without_reconciling(memory):
    memory.fail_inject = KeyboardInterrupt("SIGTERM")
    result = engine.run(engine.plan(_drill(), "mem"))
    assert memory.events == ["load started", "inject link-down", "restore link-down"]
    assert result.verdict == "interrupted" and result.journal.interrupted == "SIGTERM"
    assert result.reconciliation is None
    assert memory.loads[0].ended is not None  # the clients were stopped, not left running


class _SignalledInAFinalizer:
    """Sends this process SIGINT from its `__del__`, where Python prints the KeyboardInterrupt and drops it (what
    a drill met in make test: the signal landed while an asyncio event loop was being collected)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the handler runs here, inside the finalizer
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_exception_a_finalizer_dropped_still_ends_the_drill_in_restore(memory):
    memory.on_inject = lambda: _SignalledInAFinalizer()  # made and collected at once
    result = engine.run(engine.plan(_drill(fault_s=6.0, recovery_s=6.0), "mem"))
    assert memory.events == ["load started", "inject link-down", "restore link-down"]
    assert result.verdict == "interrupted" and result.journal.interrupted == "SIGINT"
    held = result.journal.marks["restored"] - result.journal.marks["injected"]
    assert held < 3, held  # restored at once, not after the fault's 6 s
    assert result.reconciliation is None and memory.loads[0].ended is not None


def test_a_stack_that_is_not_steady_is_refused_before_anything_is_touched(memory, monkeypatch):
    monkeypatch.setattr(engine, "PREFLIGHT_STEADY_S", 0.5)
    memory.steady = False
    with pytest.raises(engine.DrillRefused, match="not in its steady state after 0.5 s"):
        engine.run(engine.plan(_drill(), "mem"))
    assert memory.events == []


def test_a_stack_still_settling_is_waited_for_and_then_drilled(memory, monkeypatch):
    """A drill right after another meets a stack still settling: it waits for steady, then runs."""
    import threading

    monkeypatch.setattr(engine, "PREFLIGHT_STEADY_S", 30.0)
    memory.steady = False
    threading.Timer(1.5, lambda: setattr(memory, "steady", True)).start()
    result = engine.run(engine.plan(_drill(), "mem"))
    assert result.verdict == "pass" and memory.events[0] == "load started"


def test_a_fault_the_stack_does_not_have_is_refused_at_planning(memory):
    drill = model.Drill(name="d", description="x", faults=[faults.LinkDown(kind="link-down", group="carrier:zz")])
    with pytest.raises(Exception, match="carrier:zz"):
        engine.plan(drill, "mem")
    assert memory.events == []


def test_what_clients_saw_during_the_fault_is_judged_against_the_expectations(memory):
    memory.clients_hurt = True
    result = engine.run(engine.plan(_drill(max_error_rate=0.0, max_recovery_s=60), "mem"))
    assert result.verdict == "fail"
    errors = _check(result, "client error rate")
    assert not errors["ok"] and errors["actual"] > 0
    assert result.figures is not None and result.figures.client_errors > 0


# -- capacity verify runs as drills do: a cut site is always restored ---------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_capacity_verify_restores_a_cut_site_when_interrupted(memory, monkeypatch, signum):
    from tradestack.capacity import verify

    memory.signal_during_load = signum
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        verify.verify("mem", only=["sz1"], duration_s=0.5, warmup_s=0, on_step=steps.append)
    assert memory.events == ["inject link-down", "load started", "restore link-down"]
    assert memory.loads[0].ended is not None  # the clients were stopped too
    assert "site sz1 down: restoring: link-down in memory" in steps


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_capacity_verify_measures_no_further_scenario_after_a_signal_a_finalizer_dropped(memory):
    from tradestack.capacity import verify

    memory.on_inject = lambda: _SignalledInAFinalizer()
    with pytest.raises(KeyboardInterrupt):
        verify.verify("mem", duration_s=0.5, warmup_s=0)
    assert memory.events == ["load started", "inject link-down", "load started", "restore link-down"]


def test_capacity_verify_measures_each_scenario_and_restores_each_cut(memory, monkeypatch):
    from tradestack.capacity import verify

    results = verify.verify("mem", duration_s=0.5, warmup_s=0)
    assert [m.scenario for m in results] == ["all sites up", "site sz1 down", "site hk1 down"]
    assert memory.events.count("inject link-down") == memory.events.count("restore link-down") == 2
    assert all(m.target_per_s == memory.topology.required("orders_per_second") for m in results)


def test_capacity_verify_measures_nothing_on_a_stack_that_is_not_steady(memory, monkeypatch):
    from tradestack.capacity import verify

    monkeypatch.setattr(verify, "STEADY_WITHIN_S", 0.5)
    memory.steady = False
    with pytest.raises(engine.DrillRefused, match="not in its steady state after 0.5 s, so capacity verify touched "
                                                  "nothing: .*app is stopped"):
        verify.verify("mem", duration_s=0.5, warmup_s=0)
    assert memory.events == [] and memory.loads == []


def test_the_observer_asks_its_probes_at_once_and_the_base_asks_every_router_and_database_at_once(memory):
    """Over SSH one probe takes a tenth of a second or more: a sample asks its four questions together, and the
    base substrate asks each router's breakers and each database's role together. Each probe here waits for all
    the others (a barrier): asked one after the other, the barrier breaks and no sample is taken."""
    import threading

    from tradestack.drills.observer import Observer
    from tradestack.polling import wait_for
    from tradestack.substrates.probe import StackProbe

    together = threading.Barrier(4, timeout=5)

    def waiting(answer: object):
        def probe() -> object:
            together.wait()
            return answer
        return probe

    memory.probe.breakers = waiting({})  # type: ignore[method-assign]
    memory.probe.database_leader = waiting("mem-sz1-orderdb-1")  # type: ignore[method-assign]
    memory.vip_holders = waiting({"sz1": "mem-sz1-gateway-1"})  # type: ignore[method-assign]
    memory.signals = waiting({"paths": 2})  # type: ignore[method-assign]
    samples: list = []
    observer = Observer(memory, samples.append)
    observer.start()
    try:
        wait_for(lambda: samples, 10, 0.1)
    finally:
        observer.stopping.set()
        observer.join(timeout=10)
    assert samples and samples[0].leader == "mem-sz1-orderdb-1" and samples[0].vip_holders["sz1"], samples

    routers, dbs = memory.of("router"), memory.of("orderdb")
    asked = threading.Barrier(len(routers), timeout=5)
    primaries = threading.Barrier(len(dbs), timeout=5)

    def http(host: str, method: str, url: str, body: object = None, timeout: float = 1.0):
        if url.endswith("/venues"):
            asked.wait()
            return 200, {"venues": [{"venue": "exchange", "state": "closed"}]}
        primaries.wait()
        return (200 if "198.18.2." in url else 503), None

    memory.http = http  # type: ignore[method-assign]
    assert StackProbe(memory).breakers() == {r.name: {"exchange": "closed"} for r in routers}
    assert StackProbe(memory).database_leader() == "mem-hk1-orderdb-1"


def test_capacity_verify_records_a_cut_that_failed_and_still_undoes_it(memory):
    from tradestack.capacity import verify

    memory.fail_inject = RuntimeError("netlink said no")
    results = verify.verify("mem", only=["sz1"], duration_s=0.5, warmup_s=0)
    assert [(m.scenario, m.ok) for m in results] == [("site sz1 down", False)]
    assert "the site could not be cut off: RuntimeError: netlink said no" in results[0].detail
    assert memory.events == ["inject link-down", "restore link-down"] and memory.loads == []


def test_survivors_that_do_not_serve_are_named_with_what_their_gateways_lack(memory):
    """A cut whose survivors never turned ready (make test: 90 s of `no site but hk1 answers ready on its VIP`)
    says what each surviving VIP answered, so a run's output tells a missing database from a router heartbeat."""
    from tradestack.capacity import verify

    memory.steady, stack = False, memory
    assert sorted(stack.vips) == ["hk1", "sz1"]
    [why] = verify.survivors_not_serving(stack, "sz1")
    assert why.startswith("no site but sz1 answers ready on its VIP (hk1: 503 "), why
    assert '"router": "no router heartbeat within 3 s"' in why and "sz1:" not in why
    memory.steady = True
    assert verify.survivors_not_serving(stack, "sz1") == []


def test_a_vip_whose_load_balancer_has_no_gateway_up_names_what_each_gateway_answers(memory, monkeypatch):
    """make test's cut of hk1 waited 90 s on "sz1: 503": the load balancer's own page, with no gateway up behind
    it, hides why; the gateways are then asked past it."""
    from tradestack.capacity import verify
    from tradestack.substrates.probe import StackProbe

    monkeypatch.setattr(type(memory.probe), "vip_readiness", lambda self, site, timeout=2.0: (503, None))
    asked = []

    def gateway(self, g, timeout=2.0):
        asked.append(g.name)
        return (503, {"ready": False, "database": "connection refused"}) if g.site == "hk1" else (0, None)
    monkeypatch.setattr(StackProbe, "gateway_readiness", gateway)
    [why] = verify.survivors_not_serving(memory, "sz1")
    assert why == ('no site but sz1 answers ready on its VIP (hk1: 503 from its load balancer, whose gateways '
                   'answer: hk1-gateway-1 503 {"database": "connection refused", "ready": false})'), why
    assert asked == ["mem-hk1-gateway-1"]  # the cut site's gateways are not asked


def test_capacity_verify_says_when_the_survivors_of_a_cut_never_served_before_it_measured(memory, monkeypatch):
    """Measured anyway (what the clients got is the figure), but a scenario that carried nothing says why: make
    test saw `carried 0/s of 120/s` with no word that the survivors had no database primary."""
    from tradestack.capacity import verify

    monkeypatch.setattr(verify, "SERVE_WITHIN_S", 0.5)
    monkeypatch.setattr(verify, "survivors_not_serving", lambda stack, cut: [f"no database primary outside {cut} yet"])
    results = verify.verify("mem", only=["sz1"], duration_s=0.5, warmup_s=0)
    assert [(m.scenario, m.ok) for m in results] == [("site sz1 down", False)]
    assert "survivors did not serve within 0.5 s of the cut: no database primary outside sz1 yet" in results[0].detail
    assert memory.events == ["inject link-down", "load started", "restore link-down"]


def test_capacity_verify_through_the_cli_keeps_its_result_as_a_signed_evidence_record(memory, monkeypatch, tmp_path):
    """`capacity verify` writes its result (and the measured file, when asked) under the stack's state and keeps
    them as an evidence record that `evidence verify` accepts."""
    import json

    from typer.testing import CliRunner

    from tradestack.capacity import verify
    from tradestack.cli.app import app
    from tradestack.evidence import chain, keeper

    monkeypatch.setattr(verify, "open_stack", lambda name: memory)
    monkeypatch.setattr(memory, "disposable", True, raising=False)  # a lab: no drill policy to satisfy
    runner = CliRunner()
    done = runner.invoke(app, ["capacity", "verify", "--stack", "mem", "--duration", "1", "--warmup", "0",
                               "--only", "all", "--write-measured", str(tmp_path / "m.yaml"), "--json"])
    assert done.exit_code in (0, 1), done.output[-2000:]
    result = json.loads(done.stdout)
    [record] = chain.records(keeper.records_store(), "mem")
    assert result["evidence"]["record"] == record.seq == 1 and record.kind == "capacity"
    folder = Path(result["evidence"]["folder"])
    assert sorted(record.files) == ["measured.yaml", "verify.json"]
    assert record.files["verify.json"] == chain.digest((folder / "verify.json").read_bytes())
    assert json.loads((folder / "verify.json").read_text())["scenarios"] == result["scenarios"]
    assert keeper.verify("mem") == (1, [])


def test_a_leader_one_router_cannot_see_is_asked_of_the_next(memory):
    """A router just powered back may not reach the database hosts yet: the observer asks the next live router
    before it counts a moment without a leader (a drill counted 9 s that only its first vantage point lacked)."""
    from tradestack.substrates.probe import StackProbe

    first, second = (r.name for r in memory.live_hosts(memory.of("router"))[:2])
    asked: list[str] = []

    def http(host: str, method: str, url: str, body: object = None, timeout: float = 1.0):
        asked.append(host)
        return (200 if host == second and "198.18.2." in url else 503), None

    memory.http = http  # type: ignore[method-assign]
    assert StackProbe(memory).database_leader() == "mem-hk1-orderdb-1"
    assert asked[0] == first and second in asked

    memory.http = lambda host, method, url, body=None, timeout=1.0: (503, None)  # type: ignore[method-assign]
    assert StackProbe(memory).database_leader() is None


def test_the_baseline_waits_for_the_clients_sessions_to_connect():
    """Hundreds of sessions take a loaded stack seconds to accept: the baseline (judged on the sessions held at
    its end) starts once the clients report LOAD_SHARE of them connected, or after the start-up allowance."""
    import json as json_

    from tradestack.drills.clients import Clients

    class Growing:
        returncode = None

        def __init__(self) -> None:
            self.t0 = time.time()

        def stderr_lines(self) -> list[str]:  # 40 more sessions connected every 0.1 s, of 320
            n = int((time.time() - self.t0) / 0.1) + 1
            return [json_.dumps({"progress": {"t": i, "sent": 5 * i, "answered": 5 * i, "served_at_once": 5 * i,
                                              "connected": min(320, 40 * i), "sessions": 320}}) for i in range(n)]

        def terminate(self) -> None: ...

    clients = Clients(Growing())  # type: ignore[arg-type]
    assert clients.wait_sending() is None
    held = clients.wait_connected(0.95, timeout=5)
    assert held == 1.0 and time.time() - clients.started >= 0.7  # 8 reports in: 320 connected
    assert clients.reports[-1].connected == 320
    slow = Clients(Growing())  # type: ignore[arg-type]
    assert slow.wait_connected(0.95, timeout=0.25) < 0.95  # the allowance over: the share reached so far
