import sys
import types

import pytest
from agents.realtime import RealtimeAgent

from gateway.bridge.agents import CallInfo, agent_for_call, default_agent, load_agent_source

INFO = CallInfo("CA1", "MZ1", "AC1", "+1555", "+1666", {"from": "+1555"})


@pytest.fixture
def module(monkeypatch):
    mod = types.ModuleType("callers_agents")
    mod.support = RealtimeAgent(name="Support", instructions="help")
    mod.by_number = lambda info: RealtimeAgent(name=f"For {info.from_}", instructions="hi")

    async def async_factory(info: CallInfo) -> RealtimeAgent:
        return RealtimeAgent(name=f"Async {info.call_sid}", instructions="hi")

    mod.async_factory = async_factory
    mod.not_an_agent = 42
    mod.bad_factory = lambda info: "oops"
    mod.nested = types.SimpleNamespace(agent=mod.support)
    monkeypatch.setitem(sys.modules, "callers_agents", mod)
    return mod


async def test_agent_object_factory_and_async_factory(module) -> None:
    assert await agent_for_call(load_agent_source("callers_agents:support"), INFO) is module.support
    assert (await agent_for_call(load_agent_source("callers_agents:by_number"), INFO)).name == "For +1555"
    assert (await agent_for_call(load_agent_source("callers_agents:async_factory"), INFO)).name == "Async CA1"
    assert load_agent_source("callers_agents:nested.agent") is module.support


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:agent", "cannot import"),
        ("callers_agents:missing", "has no attribute"),
        ("callers_agents:not_an_agent", "expected a RealtimeAgent"),
    ],
)
def test_bad_specs_fail_at_start_naming_the_setting(module, spec, message) -> None:
    with pytest.raises(ValueError, match=f"GATEWAY_AGENT: .*{message}"):
        load_agent_source(spec)


async def test_a_factory_returning_something_else_is_an_error(module) -> None:
    with pytest.raises(TypeError, match="expected a RealtimeAgent"):
        await agent_for_call(load_agent_source("callers_agents:bad_factory"), INFO)


def test_default_agent_uses_the_configured_instructions() -> None:
    agent = default_agent("Be brief.")
    assert isinstance(agent, RealtimeAgent) and agent.instructions == "Be brief."
