"""Security controls: key-only sshd, non-root services, the database off public addresses, secret files."""

from __future__ import annotations

import pytest

from tradestack.adapters import systemd
from tradestack.audit.placed import trading_programs


@pytest.mark.control("SEC-01")
@pytest.mark.targets("hostname", lambda ctx: ctx.names())
def test_sshd_allows_no_passwords_and_no_root_password_login(audit, evidence, hostname):
    config = audit.inventory[hostname]["sshd_config"]
    out = evidence.run(audit.host(hostname), hostname, f"/usr/sbin/sshd -T -f {config}")
    effective = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    evidence.note(hostname, f"effective settings of {config}", "\n".join(
        f"{k} {effective.get(k)}" for k in ("passwordauthentication", "kbdinteractiveauthentication", "permitrootlogin")))
    assert out.rc == 0, f"sshd -T failed: {out.stderr.strip()[:200]}"
    assert effective.get("passwordauthentication") == "no", "PasswordAuthentication is not 'no'"
    assert effective.get("kbdinteractiveauthentication", "no") == "no", "KbdInteractiveAuthentication is on"
    assert effective.get("permitrootlogin") in ("without-password", "prohibit-password", "no"), \
        f"PermitRootLogin is {effective.get('permitrootlogin')!r}"


@pytest.mark.control("SEC-02")
@pytest.mark.targets("hostname", lambda ctx: [h for h in ctx.names() if trading_programs(ctx, h)])
def test_trading_services_run_as_non_root_users(audit, evidence, hostname):
    host = audit.host(hostname)
    placed = trading_programs(audit, hostname)
    if audit.data.get("supervisor", "supervisord") == "systemd":
        pids = _systemd_main_pids(audit, evidence, host, hostname, placed)
    else:
        pids = _supervisord_pids(audit, evidence, host, hostname, placed)
    ps = evidence.run(host, hostname, f"ps -o pid=,user= -p {','.join(pids.values())}")
    owners = dict(line.split() for line in ps.stdout.splitlines() if len(line.split()) == 2)
    for program, user in placed.items():
        owner = owners.get(pids[program])
        assert owner, f"ps found no process {pids[program]} ({program}): rc {ps.rc}"
        assert owner == user and owner != "root", f"{program} runs as {owner!r}, not {user!r}"


def _supervisord_pids(audit, evidence, host, hostname: str, placed: dict[str, str]) -> dict[str, str]:
    conf = f"{audit['state_base']}/{hostname}/supervisor/supervisord.conf"
    # one line per program asked, in order; a program that is not running: pid 0 (and exit 7, LSB "not running")
    asked = evidence.run(host, hostname, f"supervisorctl -c {conf} pid {' '.join(placed)}")
    pids = dict(zip(placed, (line.strip() for line in asked.stdout.splitlines())))
    assert len(pids) == len(placed), \
        f"supervisorctl pid {' '.join(placed)} exited {asked.rc}: {(asked.stderr or asked.stdout).strip()[:200]}"
    for program, pid in pids.items():
        assert pid != "0", f"{program} is placed on {hostname} and has no running process"
        assert pid.isdigit(), f"supervisorctl pid {program} answered {pid[:200]!r}, not a process id"
    assert asked.rc == 0, f"supervisorctl pid {' '.join(placed)} exited {asked.rc}: {asked.stderr.strip()[:200]}"
    return pids


def _systemd_main_pids(audit, evidence, host, hostname: str, placed: dict[str, str]) -> dict[str, str]:
    """Each placed program's unit (tradestack-<program>.service, as the supervision role writes it): active, a
    main process, and a `User=` that is not root; the main process's owner is then judged as on supervisord."""
    units = {program: systemd.unit(program) for program in placed}
    asked = evidence.run(host, hostname, "systemctl show -p Id -p ActiveState -p MainPID -p User "
                                         + " ".join(units.values()))
    shown: dict[str, dict[str, str]] = {}
    for block in asked.stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            shown[props["Id"]] = props
    assert asked.rc == 0 and shown, f"systemctl show exited {asked.rc}: {(asked.stderr or asked.stdout).strip()[:200]}"
    pids = {}
    for program, unit in units.items():
        props = shown.get(unit, {})
        assert props.get("ActiveState") == "active", \
            f"{program} is placed on {hostname} and its unit {unit} is {props.get('ActiveState') or 'unknown'}"
        assert props.get("User", "") not in ("", "root"), \
            f"{unit} has no User= other than root: {program} would run as root"
        pid = props.get("MainPID", "0")
        assert pid.isdigit() and pid != "0", f"{unit} is active with no main process (MainPID {pid})"
        pids[program] = pid
    return pids


@pytest.mark.control("SEC-03")
@pytest.mark.targets("hostname", lambda ctx: ctx.names("orderdb"))
def test_the_database_listens_only_on_the_site_lan_and_loopback(audit, evidence, hostname):
    out = evidence.run(audit.host(hostname), hostname, "ss -Hltn 'sport = :5432'")
    assert out.rc == 0, f"ss failed (rc {out.rc}): {out.stderr.strip()[:200]}"
    addresses = {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.stdout.splitlines() if line.split()}
    assert addresses, "nothing listens on port 5432: no database to judge"
    allowed = {audit.inventory[hostname]["lan_address"], "127.0.0.1"}
    assert addresses <= allowed, f"PostgreSQL listens on {sorted(addresses - allowed)} (allowed: {sorted(allowed)})"


def _secret_files(ctx) -> list[str]:
    files = []
    for name in ctx.names():
        service = ctx.inventory[name]["service"]
        if service == "orderdb":
            files.append(f"{name}:{ctx['state_base']}/{name}/patroni/patroni.yml:postgres")
        elif service in ("gateway", "router") and service not in ctx["clustered"]:
            files.append(f"{name}:{ctx['state_base']}/{name}/app/{service}.json:{ctx['service_user']}")
    return files


@pytest.mark.control("SEC-04")
@pytest.mark.targets("secret", _secret_files)
def test_secret_files_are_0600_and_owned_by_their_service_user(audit, evidence, secret):
    hostname, path, user = secret.split(":")
    out = evidence.run(audit.host(hostname), hostname, f"stat -c '%a %U' {path}")
    assert out.rc == 0, f"{path} is missing" if "No such file" in out.stderr else \
        f"stat {path} failed (rc {out.rc}): {out.stderr.strip()[:200]}"
    mode, owner = out.stdout.split()
    assert mode == "600", f"{path} has mode 0o{mode}, not 0o600"
    assert owner == user, f"{path} is owned by {owner}, not {user}"
