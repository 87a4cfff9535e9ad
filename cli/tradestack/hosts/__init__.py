"""Real machines over SSH as a substrate: a hosts file describes the estate, a Pulumi stack registers it."""
