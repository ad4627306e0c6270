"""The test kit costs nothing until used: pytest imports its plugin in every run where the
package is installed, so neither the plugin nor ``import gateway.testing`` (nor a peer's
package) may load the gateway, the SDK or the servers. Checked by the modules loaded, not by
time (machines are noisy). And the public names still resolve, each from its package."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Top-level packages the kit's peers use; none may load on import of a facade or the plugin.
HEAVY = ["agents", "openai", "starlette", "uvicorn", "numpy", "twilio", "websockets", "pydantic"]

FACADES = ["gateway.testing", "gateway.testing.realtime", "gateway.testing.caller",
           "gateway.testing.twilio_api"]


def run_python(code: str, cwd: Path | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_plugin_and_the_facades_import_nothing_heavy() -> None:
    out = run_python(textwrap.dedent(f"""
        import json, sys
        import gateway, gateway.testing.pytest_plugin, gateway.testing
        import gateway.testing.realtime, gateway.testing.caller, gateway.testing.twilio_api
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})
        bridge = sorted(m for m in sys.modules if m.startswith(('gateway.bridge', 'gateway.app')))
        import gateway.testing
        system = gateway.testing.PhoneSystem
        print(json.dumps([heavy, bridge, system.__module__ + '.' + system.__qualname__]))
    """))
    heavy, bridge, system = json.loads(out)
    assert heavy == []
    assert bridge == []
    assert system == "gateway.testing.phone.PhoneSystem"


def test_an_unrelated_pytest_run_loads_the_plugin_but_not_the_kit(tmp_path: Path) -> None:
    """What a user's pytest run pays for having the package installed."""
    if not importlib.metadata.entry_points(group="pytest11", name="gateway"):
        pytest.skip("the package is not installed (no pytest11 entry point 'gateway')")
    (tmp_path / "test_unrelated.py").write_text(textwrap.dedent(f"""
        import sys

        def test_unrelated(request):
            plugin = request.config.pluginmanager.get_plugin("gateway")
            assert plugin is not None and hasattr(plugin, "phone_system")
            assert sorted(m for m in sys.modules if m.split(".")[0] in {set(HEAVY)!r}) == []
    """))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "test_unrelated.py"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", FACADES)
def test_a_facade_exports_its_names_lazily_and_declares_them_for_type_checkers(name: str) -> None:
    module = importlib.import_module(name)
    for public in module.__all__:
        assert getattr(module, public) is not None
        assert public in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        module.Nope  # noqa: B018
    # The TYPE_CHECKING block imports exactly the public names (what type checkers see).
    tree = ast.parse(Path(module.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    declared = sorted(alias.name for node in block.body if isinstance(node, ast.ImportFrom)
                      for alias in node.names)
    assert declared == sorted(module.__all__)


def test_the_names_users_know_come_from_gateway_testing() -> None:
    import gateway.testing as kit
    from gateway.testing import caller, phone, realtime, twilio_api

    expected = {
        "RealtimeServer": realtime, "Script": realtime, "Reply": realtime, "ToolCall": realtime,
        "When": realtime, "Heard": realtime, "RealtimeConnection": realtime,
        "TwilioCaller": caller, "FakeTwilio": twilio_api, "FakeCall": twilio_api,
        "PhoneSystem": phone, "PhoneCall": phone, "AgentSpeech": phone, "ToolUse": phone,
    }
    for public, home in expected.items():
        assert getattr(kit, public) is getattr(home, public), public


def test_the_realtime_server_runs_standalone() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.testing.realtime", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "python -m gateway.testing.realtime" in result.stdout
