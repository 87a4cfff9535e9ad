"""What systemd says about a host's units, read from `systemctl list-units --plain --no-legend` (pure)."""

from __future__ import annotations


def unit_states(listing: str) -> dict[str, str]:
    """Each loaded unit's name (without `.service`) and its sub-state (running, exited, failed, dead ...), from the
    listing's columns: unit, load, active, sub, description. Units not loaded (masked, not found) are left out."""
    return {p[0].removesuffix(".service"): p[3].lower() for line in listing.splitlines()
            if len(p := line.split()) >= 4 and p[1] == "loaded"}


UNIT_PREFIX = "tradestack-"   # the supervision role runs program P as unit tradestack-P.service
UNITS = f"{UNIT_PREFIX}*.service"   # every one of them, as systemctl matches units


def unit(program: str) -> str:
    """The unit that runs `program` on a systemd host."""
    return f"{UNIT_PREFIX}{program}.service"


def program_states(listing: str) -> dict[str, str]:
    """The programs tradestack runs on a systemd host (unit tradestack-<program>.service) and their sub-states, by
    program name as supervisord would name them; any other unit is left out."""
    return {unit.removeprefix(UNIT_PREFIX): state for unit, state in unit_states(listing).items()
            if unit.startswith(UNIT_PREFIX)}


def active_after_start(shown: str) -> dict[str, float]:
    """Each unit's seconds from its manager's start to its entry into active, from the manager's
    UserspaceTimestampMonotonic on the first line, then `systemctl show -p Id -p ActiveEnterTimestampMonotonic`'s
    blocks; a unit never active since is left out."""
    lines = shown.splitlines()
    try:
        start = int(lines[0])
    except (IndexError, ValueError):
        return {}
    times: dict[str, float] = {}
    unit = None
    for line in lines[1:]:
        key, _, value = line.partition("=")
        if key == "Id":
            unit = value.removesuffix(".service")
        elif key == "ActiveEnterTimestampMonotonic" and unit and value.isdigit() and int(value) >= start > 0:
            times[unit] = round((int(value) - start) / 1e6, 1)
    return times
