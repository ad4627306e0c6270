"""The ``gateway`` command line: its help, its usage errors and its log lines (issue 10)."""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway import cli

ROOT = Path(__file__).resolve().parent.parent

#: ``gateway.logformat.TEXT_FORMAT``: "2026-01-31 12:00:00,123 INFO    uvicorn.error: message".
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) *([\w.]+): .")


def _commands(parser: argparse.ArgumentParser, prefix: str = "gateway"):
    """(name, parser) of the program and every command and subcommand."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def test_every_argument_of_every_command_has_help() -> None:
    missing = [
        f"{command} {action.option_strings or action.dest}"
        for command, parser in _commands(cli.build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
        and not action.help
    ]
    assert missing == []


def _help(*command: str) -> str:
    parser = dict(_commands(cli.build_parser()))[" ".join(("gateway", *command))]
    return " ".join(parser.format_help().split())  # unwrapped


def test_realtime_server_host_and_port_are_explained() -> None:
    text = _help("realtime-server")
    assert "--host HOST interface to bind (default 127.0.0.1)" in text
    assert "--port PORT port to bind (default 8765" in text


@pytest.mark.parametrize("command", [("serve",), ("twilio", "configure-number")])
def test_env_file_help_says_how_the_file_is_read(command) -> None:
    text = _help(*command)
    assert "--env-file PATH" in text
    for fact in ("default: .env", "the process environment overrides it", "a missing file is skipped"):
        assert fact in text


def test_call_from_shows_a_number_metavar() -> None:
    text = _help("call")
    assert "--from NUMBER" in text and "FROM_" not in text


def test_bare_gateway_prints_usage_and_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: gateway") and "COMMAND" in captured.err
    assert captured.out == ""
    # As a process, too (what a shell sees).
    done = subprocess.run([sys.executable, "-m", "gateway.cli"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stderr.startswith("usage: gateway")


# --- Log lines -----------------------------------------------------------------------------------


class _Process:
    """A ``gateway`` command in a child process, its stderr (and, with ``with_stdout``, its
    stdout) read line by line as it comes."""

    def __init__(self, *argv: str, env: dict[str, str], cwd: Path, with_stdout: bool = False) -> None:
        streams = ({"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if with_stdout
                   else {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE})
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv], cwd=cwd, env=env,
                                     text=True, **streams)
        self._output = self.proc.stdout if with_stdout else self.proc.stderr
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._output:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait()}) before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _loggers(lines: list[str]) -> set[str]:
    """The logger names of ``lines``, after checking every line has the gateway's format."""
    odd = [line for line in lines if line.strip() and not LOG_LINE.match(line)]
    assert odd == [], "lines not in the gateway's log format:\n" + "\n".join(odd)
    return {LOG_LINE.match(line).group(2) for line in lines if line.strip()}


def _child_env(**settings: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("GATEWAY_", "OPENAI_", "TWILIO_", "PUBLIC_URL"))}
    return {**keep, "PYTHONPATH": str(ROOT), **settings}


def _serve(tmp_path: Path, **settings: str) -> _Process:
    """``gateway serve`` on a free port with the least settings (and ``settings``), its stdout
    read too: uvicorn's own logging config sends its access lines there."""
    env = _child_env(
        PUBLIC_URL="http://127.0.0.1", TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="secret",
        OPENAI_REALTIME_URL="ws://127.0.0.1:9/v1/realtime",  # never dialled: no call is made
        **settings,
    )
    return _Process("serve", "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--env-file", str(tmp_path / "none.env"),
                    env=env, cwd=tmp_path, with_stdout=True)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_gateway_serve_logs_uvicorn_lines_in_the_gateway_format(tmp_path) -> None:
    server = _serve(tmp_path)
    try:
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as response:
            assert response.status == 200
        server.wait_for(r'"GET /healthz HTTP/1\.1" 200')
        assert server.stop(signal.SIGTERM) == 0  # a drain with no calls, then a clean exit
    finally:
        server.kill()
    loggers = _loggers(server.lines)
    assert {"uvicorn.error", "uvicorn.access", "gateway.app"} <= loggers, loggers


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_gateway_realtime_server_logs_in_the_gateway_format(tmp_path) -> None:
    server = _Process("realtime-server", "--host", "127.0.0.1", "--port", "0", env=_child_env(), cwd=tmp_path)
    try:
        server.wait_for(r"listening on ws://127\.0\.0\.1:\d+/")
        # SIGTERM: SIGINT may be ignored in a test run started in the background (a shell's rule),
        # and the child would inherit that.
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    loggers = _loggers(server.lines)
    assert "websockets.server" in loggers and any(name.startswith("gateway.") for name in loggers), loggers


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_gateway_serve_logs_json_lines_when_asked(tmp_path) -> None:
    server = _serve(tmp_path, GATEWAY_LOG_FORMAT="json")
    try:
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as response:
            assert response.status == 200
        server.wait_for(r"GET /healthz HTTP/1\.1")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    import json

    records = [json.loads(line) for line in server.lines if line.strip()]  # every line is one JSON object
    assert {"uvicorn.error", "uvicorn.access", "gateway.app"} <= {r["logger"] for r in records}
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_gateway_serve_serves_metrics_on_their_own_port_when_asked(tmp_path) -> None:
    server = _serve(tmp_path, GATEWAY_METRICS_PORT="0")
    try:
        metrics_port = server.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1)
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as response:
            assert response.status == 200 and b"gateway_active_calls 0.0" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:  # not on the public listener
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert missing.value.code == 404
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
