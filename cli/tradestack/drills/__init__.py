"""Failover drills: drill files, fault actions on the lab, the engine that always restores, figures and reports."""
