"""Operations controls: clocks agree; service logs go where rotation is configured."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

MAX_SKEW_S = 1.0


@pytest.mark.control("OPS-01")
@pytest.mark.targets("hostname", lambda ctx: ctx.names())
def test_clocks_agree_within_a_second(audit, evidence, hostname):
    before = time.time()
    out = evidence.run(audit.host(hostname), hostname, "date +%s.%N")
    after = time.time()
    assert out.rc == 0 and out.stdout.strip(), f"date failed on {hostname} (rc {out.rc}): nothing to judge"
    remote = float(out.stdout.strip())
    skew = 0.0 if before <= remote <= after else min(abs(remote - before), abs(remote - after))
    evidence.note(hostname, "skew against the auditing host (s)", round(skew, 6))
    assert skew <= MAX_SKEW_S, f"clock differs by {skew:.3f} s (bound {MAX_SKEW_S:g} s)"


@pytest.mark.control("OPS-02")
@pytest.mark.targets("hostname", lambda ctx: [h for h in ctx.names() if ctx.inventory[h]["service"] != "loadgen"])
def test_service_logs_are_written_where_rotation_is_configured(audit, evidence, hostname):
    host = audit.host(hostname)
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
