"""The reference trading stack: order gateway, router, venue simulator, load generator.

It is what drills deploy and break, and the template customers' services follow: health,
readiness and metrics endpoints, idempotent order entry, explicit back-pressure, and no
order ever lost or silently cancelled. Each component is a module; `local` runs them all
on loopback against a throw-away PostgreSQL.
"""
