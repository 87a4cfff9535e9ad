"""The soak's readings (issue 33): what counts as a failover in each part's own records, and a verdict that
fails on any of them, and on nothing read."""

from __future__ import annotations

import datetime as dt

import pytest

from tradestack.drills import soak

pytestmark = pytest.mark.unit

HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status," \
         "weight,act,bck,chkfail,chkdown,lastchg,downtime"


def _row(proxy: str, server: str, status: str, chkdown: str) -> str:
    return ",".join([proxy, server, *[""] * 15, status, "1", "1", "0", "0", chkdown, "12", "0"])


def test_haproxy_database_downs_are_the_orderdb_servers_chkdown_and_nothing_else():
    stats = "\n".join([HEADER, _row("orderdb", "FRONTEND", "OPEN", ""), _row("orderdb", "db-1", "DOWN", "3"),
                       _row("orderdb", "db-2", "UP", "1"), _row("orderdb", "BACKEND", "UP", "9"),
                       _row("gateways", "gw-1", "UP", "7"), ""])
    assert soak.database_downs(stats) == 4
    assert soak.database_downs(HEADER + "\n" + _row("gateways", "gw-1", "UP", "7")) is None  # no database proxy
    assert soak.database_downs("") is None and soak.database_downs("garbage\n") is None


def test_etcd_leader_changes_are_read_from_its_metrics_page():
    page = ("# HELP etcd_server_has_leader Whether or not a leader exists.\n# TYPE etcd_server_has_leader gauge\n"
            "etcd_server_has_leader 1\n# HELP etcd_server_leader_changes_seen_total The number of leader changes "
            "seen.\n# TYPE etcd_server_leader_changes_seen_total counter\netcd_server_leader_changes_seen_total 4\n")
    assert soak.etcd_leader_changes(page) == 4
    assert soak.etcd_leader_changes("etcd_server_has_leader 1\n") is None and soak.etcd_leader_changes(None) is None


def test_lock_renewal_gaps_are_between_one_leaders_consecutive_loops_within_the_window():
    log = "\n".join([
        "2026-12-07 10:00:00,000 INFO: no action. I am (db-1), the leader with the lock",  # before the window
        "2026-12-07 10:00:01,000 INFO: no action. I am (db-1), the leader with the lock",
        "2026-12-07 10:00:02,100 INFO: no action. I am (db-1), the leader with the lock",
        "2026-12-07 10:00:02,500 WARNING: Loop time exceeded, rescheduling immediately.",
        "2026-12-07 10:00:04,600 INFO: no action. I am (db-1), the leader with the lock",
        "2026-12-07 10:00:05,000 INFO: no action. I am (db-2), a secondary, and following a leader (db-1)",
        "2026-12-07 10:00:06,000 INFO: promoted self to leader by acquiring session lock",
        "2026-12-07 10:00:07,000 INFO: no action. I am (db-2), the leader with the lock",  # another member: over
        "2026-12-07 10:00:08,000 INFO: no action. I am (db-2), the leader with the lock",
        "2026-12-07 10:00:30,000 INFO: no action. I am (db-2), the leader with the lock",  # after the window
    ])
    start = dt.datetime(2026, 12, 7, 10, 0, 0, 500000, tzinfo=dt.timezone.utc).timestamp()
    gaps = soak.renewal_gaps(log, start, start + 10)
    assert [(round(g, 3), who) for g, who in gaps] == [(1.1, "db-1"), (2.5, "db-1"), (1.0, "db-2")]


def _result(**kw) -> soak.SoakResult:
    good = dict(stack="s", minutes=1, rate=10, sessions=4, started=0, ended=60, orders_planned=600, orders_sent=598,
                watched=0.99, no_leader_s=0.0, history_read=True, etcd_leader_changes=0, database_downs=0, ttl_s=3,
                renewals=59, longest_renewal_gap_s=1.2)
    return soak.SoakResult(**{**good, **kw})


def test_the_soak_passes_only_with_load_watched_every_part_read_and_nothing_failed_over():
    r = _result()
    r.judge()
    assert r.verdict == "pass" and r.lock_margin_s == pytest.approx(1.8)
    failing = {"leader changed": dict(leader_changes=[(30.0, "db-2")]), "no leader seen": dict(no_leader_s=1.5),
               "etcd election": dict(etcd_leader_changes=1), "etcd member unread": dict(etcd_unread=["c-1"]),
               "haproxy down": dict(database_downs=2), "haproxy unread": dict(haproxy_unread=["gw-1"]),
               "no load": dict(orders_sent=100), "nothing planned": dict(orders_planned=0, orders_sent=0),
               "not watched": dict(watched=0.5), "no renewal read": dict(renewals=0, longest_renewal_gap_s=None),
               "lock nearly lost": dict(longest_renewal_gap_s=3.2), "no samples": dict(no_leader_s=None),
               "history unread": dict(history_read=False)}
    for why, change in failing.items():
        r = _result(**change)
        r.judge()
        assert r.verdict == "fail", why
