"""Adapters: each wraps one outside tool (Pulumi, Ansible, ...) once, behind small typed results."""
