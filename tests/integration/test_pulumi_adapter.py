"""The Pulumi adapter against the real engine on a local file backend (this test's own state dir)."""

from __future__ import annotations

import uuid

import pytest
from pulumi import automation as auto

from tradestack.adapters.pulumi import PulumiStack, StackSpec

pytestmark = pytest.mark.integration


def test_the_configuration_is_read_once_and_again_after_this_stack_changes_it(monkeypatch):
    """A drill's observer asks for the configuration twice a second; each read is a pulumi process."""
    reads = []
    read = auto.Stack.get_all_config
    monkeypatch.setattr(auto.Stack, "get_all_config", lambda self: reads.append(1) or read(self))
    stack = PulumiStack(StackSpec("tradestack-adapter-test", f"cfg{uuid.uuid4().hex[:8]}", lambda: None,
                                  {"tradestack:first": "1"}))
    stack.preview()  # creates the stack with its configuration
    try:
        assert stack.config() == stack.config() == {"tradestack:first": "1"}
        assert len(reads) == 1
        stack.set_config("tradestack:second", "2")
        assert stack.config() == {"tradestack:first": "1", "tradestack:second": "2"}
        assert len(reads) == 2
        fresh = PulumiStack(stack.spec)  # another command: reads what is stored
        assert fresh.config()["tradestack:second"] == "2"
    finally:
        stack.destroy()
    assert not stack.exists()
