"""What systemd says about a host's units, read from `systemctl list-units --plain --no-legend` (pure)."""

from __future__ import annotations


def unit_states(listing: str) -> dict[str, str]:
    """Each loaded unit's name (without `.service`) and its sub-state (running, exited, failed, dead ...), from the
    listing's columns: unit, load, active, sub, description. Units not loaded (masked, not found) are left out."""
    return {p[0].removesuffix(".service"): p[3].lower() for line in listing.splitlines()
            if len(p := line.split()) >= 4 and p[1] == "loaded"}
