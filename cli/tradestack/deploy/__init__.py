"""Deploying the trading stack onto a stack's hosts with Ansible: variables from the topology and
the stack, secrets from the stack's encrypted configuration, the project's wheel, one playbook run."""
