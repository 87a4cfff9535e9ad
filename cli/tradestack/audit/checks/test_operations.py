"""Operations controls: clocks agree (each host's time service synchronised, where hosts keep their own time);
service logs go where rotation is configured (supervisord's files, or systemd's journal)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

MAX_SKEW_S = 1.0


@pytest.mark.control("OPS-01")
@pytest.mark.targets("hostname", lambda ctx: ctx.names())
def test_clocks_agree_within_a_second(audit, evidence, hostname):
    if audit.data.get("time_sync"):
        _time_service_synchronised(evidence, audit.host(hostname), hostname)
        return
    # hosts without a time service of their own (the lab's namespaces share this kernel's clock): compare clocks
    before = time.time()
    out = evidence.run(audit.host(hostname), hostname, "date +%s.%N")
    after = time.time()
    assert out.rc == 0 and out.stdout.strip(), f"date failed on {hostname} (rc {out.rc}): nothing to judge"
    remote = float(out.stdout.strip())
    skew = 0.0 if before <= remote <= after else min(abs(remote - before), abs(remote - after))
    evidence.note(hostname, "skew against the auditing host (s)", round(skew, 6))
    assert skew <= MAX_SKEW_S, f"clock differs by {skew:.3f} s (bound {MAX_SKEW_S:g} s)"


def _time_service_synchronised(evidence, host, hostname: str) -> None:
    """chrony's own view (`chronyc tracking`): synchronised to a source, its clock within the bound of it. Read
    rather than compared with this host's clock: machines that share a kernel share its clock, so only their
    time service can be judged, and on real hosts it is what keeps the clock."""
    out = evidence.run(host, hostname, "chronyc -n tracking")
    tracking = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.stdout.splitlines()) if v}
    evidence.note(hostname, "time service (chronyc tracking)", {k: tracking.get(k) for k in (
        "Reference ID", "Stratum", "System time", "Leap status")})
    assert out.rc == 0 and tracking, (f"chronyc tracking failed on {hostname} (rc {out.rc}): "
                                      f"{(out.stderr or out.stdout).strip()[:200]}: no time service to judge")
    assert tracking.get("Leap status") == "Normal", f"the time service is not synchronised ({tracking.get('Leap status')})"
    reference = tracking.get("Reference ID", "")
    assert reference and not reference.startswith("00000000"), f"the time service follows no source ({reference!r})"
    words = tracking.get("System time", "").split()
    assert words and words[0].replace(".", "", 1).isdigit(), f"no offset in {tracking.get('System time')!r}"
    offset = float(words[0])
    evidence.note(hostname, "offset from its source (s)", offset)
    assert offset <= MAX_SKEW_S, f"clock {offset:.3f} s from its time source (bound {MAX_SKEW_S:g} s)"


@pytest.mark.control("OPS-02")
@pytest.mark.targets("hostname", lambda ctx: [h for h in ctx.names() if ctx.inventory[h]["service"] != "loadgen"])
def test_service_logs_are_written_where_rotation_is_configured(audit, evidence, hostname):
    host = audit.host(hostname)
    if audit.data.get("supervisor", "supervisord") == "systemd":
        _units_log_to_the_journal(evidence, host, hostname)
        return
    conf_dir = f"{audit['state_base']}/{hostname}/supervisor/conf.d"
    # every program's configuration in one command, each after a "==> file <==" line (head's own header)
    listing = evidence.run(host, hostname, f"head -v -n 1000 -- {conf_dir}/*")
    confs = {}
    for part in listing.stdout.split("==> ")[1:]:
        name, _, text = part.partition(" <==\n")
        confs[Path(name).name] = dict(line.split("=", 1) for line in text.splitlines()
                                      if "=" in line and not line.startswith(";"))
    assert listing.rc == 0 and confs, f"no supervised programs configured in {conf_dir}"
    logs = {conf: settings.get("stdout_logfile", "") for conf, settings in confs.items()}
    written = evidence.run(host, hostname, "ls -1d -- " + " ".join(shlex.quote(log) for log in logs.values() if log))
    existing = set(written.stdout.splitlines())
    for conf, settings in confs.items():
        log = logs[conf]
        evidence.note(hostname, f"{conf}: log and rotation", {k: settings.get(k) for k in (
            "stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups")})
        assert log and log in existing, f"{conf}: log file {log or '(none)'} is not being written"
        assert settings.get("stdout_logfile_maxbytes", "0") not in ("0", "0MB") and \
            int(settings.get("stdout_logfile_backups", "0")) > 0, f"{conf}: no rotation configured for {log}"


def _units_log_to_the_journal(evidence, host, hostname: str) -> None:
    """On a systemd host every tradestack unit writes to the journal (which journald rotates by size itself) and
    has written there."""
    listing = evidence.run(host, hostname, (
        "for u in $(systemctl list-units --plain --no-legend --all 'tradestack-*.service' | cut -d' ' -f1); do "
        "echo \"$u $(systemctl show -P StandardOutput \"$u\") $(journalctl -q -u \"$u\" -n 1 -o cat | wc -l)\"; done"))
    units = [line.split() for line in listing.stdout.splitlines() if len(line.split()) == 3]
    assert listing.rc == 0 and units, f"no tradestack units on {hostname} (rc {listing.rc}): nothing to judge"
    for unit, output, lines in units:
        evidence.note(hostname, f"{unit}: standard output, journal lines seen", f"{output}, {lines}")
        assert output.startswith("journal"), f"{unit} writes its output to {output}, not the journal"
        assert lines != "0", f"{unit} has written nothing to the journal"
