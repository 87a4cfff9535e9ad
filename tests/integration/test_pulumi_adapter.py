"""The Pulumi adapter against the real engine on a local file backend (this test's own state dir)."""

from __future__ import annotations

import uuid

import pytest
from pulumi import automation as auto

from tradestack.adapters.pulumi import PulumiStack, StackSpec

pytestmark = pytest.mark.integration


def _commands(monkeypatch) -> list[list[str]]:
    """Every pulumi command the adapter runs from now on (its arguments)."""
    seen: list[list[str]] = []
    run = auto.PulumiCommand.run
    monkeypatch.setattr(auto.PulumiCommand, "run",
                        lambda self, args, *a, **k: seen.append(args) or run(self, args, *a, **k))
    return seen


def test_the_configuration_is_read_once_and_again_after_this_stack_changes_it(monkeypatch):
    """A drill's observer asks for the configuration twice a second; each read is a pulumi process, and it reads
    the plain settings without decrypting the secrets."""
    stack = PulumiStack(StackSpec("tradestack-adapter-test", f"cfg{uuid.uuid4().hex[:8]}", lambda: None,
                                  {"tradestack:first": "1"}, {"tradestack:hidden": "s3cret"}))
    stack.preview()  # creates the stack with its configuration
    seen = _commands(monkeypatch)
    reads = lambda: [c for c in seen if c[0] == "config" and len(c) > 1 and c[1] == "--json"]  # noqa: E731
    try:
        assert stack.config() == stack.config() == {"tradestack:first": "1"}
        assert len(reads()) == 1 and not [c for c in seen if "--show-secrets" in c], seen
        stack.set_config("tradestack:second", "2")
        assert stack.config() == {"tradestack:first": "1", "tradestack:second": "2"}
        assert len(reads()) == 2
        fresh = PulumiStack(stack.spec)  # another command: reads what is stored
        assert fresh.config()["tradestack:second"] == "2"
    finally:
        stack.destroy()
    assert not stack.exists()


def test_outputs_are_one_pulumi_command_and_secret_ones_only_when_asked(monkeypatch):
    """The SDK's Stack.outputs runs `pulumi stack output` twice (with and without secrets); every command that
    opens a stack reads its outputs, so the adapter runs it once."""
    import pulumi

    def program() -> None:
        pulumi.export("plain", "a")
        pulumi.export("hidden", pulumi.Output.secret("b"))

    stack = PulumiStack(StackSpec("tradestack-adapter-test", f"out{uuid.uuid4().hex[:8]}", program))
    stack.up()
    try:
        seen = _commands(monkeypatch)
        assert stack.outputs() == {"plain": "a"}
        assert [c[:5] for c in seen] == [["stack", "output", "--json", "--stack", stack.spec.stack]]
        assert "--show-secrets" not in seen[0]
        assert stack.outputs(secrets_too=True) == {"plain": "a", "hidden": "b"}
        assert len(seen) == 2 and "--show-secrets" in seen[1]
    finally:
        stack.destroy()
