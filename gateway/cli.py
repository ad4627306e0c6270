"""The ``gateway`` command line. It composes; the logic lives in the packages it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__


_GATEWAY_URL = "http://127.0.0.1:8080"
_ENV_FILE_HELP = ("settings file, read as python-dotenv does; the process environment overrides it "
                  "(default: .env in the current folder; a missing file is skipped; see .env.example)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=(
            "Telephony gateway: answers Twilio phone calls and bridges them, over Media "
            "Streams, to realtime voice agents built with the OpenAI Agents SDK."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # required: a bare ``gateway`` prints the usage and exits 2, argparse's status for a usage error.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="place one complete phone call offline and show it (no accounts, no network)",
        description=(
            "Start a fake Twilio, the local Realtime server and the gateway on 127.0.0.1, and "
            "run one phone call through them: greeting, question, barge-in, keypad digits, a "
            "tool, goodbye and hang-up. Shows it live, then a summary, and writes call.wav, "
            "transcript.json, events.jsonl and timeline.png (and gateway.log) to --out."
        ),
    )
    demo.add_argument("--out", default="demo-call", help="folder for the artifacts (default: ./demo-call)")
    demo.add_argument("--real", action="store_true",
                      help="talk to OpenAI's Realtime model instead of the local one (needs OPENAI_API_KEY)")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="run the call this many times faster than real time (default 1)")
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser(
        "serve",
        help="run the gateway (Twilio webhook + Media Streams WebSocket)",
        description="Run the gateway under uvicorn. Settings come from the environment and .env "
        "(see .env.example).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None,
                       help="port to bind (default: $PORT, as containers and platforms set it, else 8080)")
    serve.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes serving the port, drained together on SIGTERM (default: one per core; "
                            "see gateway.workers)")
    serve.set_defaults(handler=_serve)

    realtime = commands.add_parser(
        "realtime-server",
        help="run the local OpenAI Realtime server (no account needed)",
        description="Serve the OpenAI Realtime GA wire protocol locally, for trying the gateway "
        "and testing agents with no OpenAI account: point OPENAI_REALTIME_URL at the URL it prints. "
        "It answers with synthesized speech-like tones and a built-in voice activity detector.",
    )
    realtime.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    realtime.add_argument("--port", type=int, default=8765, help="port to bind (default 8765; 0: any free port)")
    realtime.add_argument(
        "--pace", type=float, default=None,
        help="stream reply audio at this multiple of real time (default: as fast as possible, like the API)",
    )
    realtime.set_defaults(handler=_realtime_server)

    caller = commands.add_parser(
        "caller",
        help="place a simulated Twilio call against a gateway",
        description="Behave like Twilio with a caller on the line: POST the incoming-call webhook "
        "(signed with the auth token), open the Media Stream the TwiML names, listen to the "
        "greeting, say a clip, listen to the answer, hang up, and print what was heard.",
    )
    caller.add_argument("--webhook", default="http://127.0.0.1:8080/twilio/voice", help="the gateway's voice webhook URL")
    caller.add_argument("--auth-token", default=None, help="Twilio auth token to sign with (default: $TWILIO_AUTH_TOKEN or .env)")
    caller.add_argument("--say", metavar="FILE", help="clip the caller says: WAV (PCM16 mono, 8/16/24 kHz) or raw mu-law")
    caller.add_argument("--connect-url", help="connect here instead of the TwiML's stream URL (a public wss:// URL served locally)")
    caller.add_argument("--listen", type=float, default=15.0, help="give up listening after this many seconds (default 15)")
    caller.add_argument("--heard", metavar="WAV", help="write what the caller heard to this WAV file")
    caller.set_defaults(handler=_caller)

    call = commands.add_parser(
        "call",
        help="place an outbound call through a running gateway",
        description="POST /calls on a running gateway (bearer GATEWAY_API_KEY): Twilio calls the "
        "number, and when it answers the stream comes back to the gateway with the context.",
    )
    call.add_argument("to", help="number to call, E.164 (+15551234567)")
    call.add_argument("--agent", help="package.module:attribute of the agent for this call")
    call.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                      help="context the agent sees (CallInfo.context); repeatable")
    call.add_argument("--from", dest="from_", metavar="NUMBER",
                      help="caller ID, E.164: one of the account's Twilio numbers (default GATEWAY_CALLER_ID)")
    call.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    call.set_defaults(handler=_call)

    calls = commands.add_parser(
        "calls",
        help="the calls: in progress on a running gateway, or stored (history, show, timeline)",
        description="With no command: the calls in progress on a running gateway (gateway calls live). "
        "history, show and timeline read the stored calls where gateway serve keeps them "
        "(GATEWAY_DATA_DIR or GATEWAY_DATABASE_URL, from the environment or .env); they need no "
        "Twilio or OpenAI credentials.",
    )
    calls.add_argument("--url", default=_GATEWAY_URL, help="the gateway's base URL (for live)")
    calls.set_defaults(handler=_calls_live)
    calls_commands = calls.add_subparsers(dest="calls_command", metavar="COMMAND")
    live = calls_commands.add_parser("live", help="the calls in progress on a running gateway (GET /calls)",
                                     description="List the calls in progress on a running gateway (GET /calls, "
                                     "bearer GATEWAY_API_KEY).")
    # SUPPRESS: ``gateway calls --url URL live`` keeps the URL given before the command.
    live.add_argument("--url", default=argparse.SUPPRESS, help=f"the gateway's base URL (default {_GATEWAY_URL})")
    live.set_defaults(handler=_calls_live)
    hangup = calls_commands.add_parser(
        "hangup", help="end a call in progress now, on whichever instance holds it",
        description="End a call in progress now (POST /calls/CALL_SID/hangup, bearer GATEWAY_API_KEY): the "
        "gateway instance holding it hangs up through Twilio, whatever the agent is saying.")
    hangup.add_argument("call_sid", metavar="CALL_SID", help="the call's Twilio SID (CA...), as live lists it")
    hangup.add_argument("--url", default=argparse.SUPPRESS, help=f"the gateway's base URL (default {_GATEWAY_URL})")
    hangup.set_defaults(handler=_calls_hangup)
    history = calls_commands.add_parser(
        "history", help="the stored calls, newest first",
        description="The stored calls, newest first: when, who, how long, how it ended.")
    history.add_argument("--since", metavar="WHEN", type=_since,
                         help="only calls that started since: a time ago (30m, 1h, 2d, 1w), a date (2026-11-30) "
                         "or an ISO 8601 time (2026-11-30T14:00:00+01:00); UTC unless it says")
    history.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N calls (default 50)")
    history.add_argument("--json", action="store_true", help="a JSON array of the calls' summaries")
    history.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
    history.set_defaults(handler=_calls_history)
    show = calls_commands.add_parser(
        "show", help="one stored call: figures, transcript, tools, keys, events",
        description="One stored call in full: its figures, the transcript (who said what), tool calls, "
        "keypresses and every event, with its time from the stream's start.")
    show.add_argument("call_sid", metavar="CALL_SID", help="the call's Twilio SID (CA...), as history lists it")
    show.add_argument("--json", action="store_true", help="the stored call as JSON (docs/observability.md)")
    show.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
    show.set_defaults(handler=_calls_show)
    timeline = calls_commands.add_parser(
        "timeline", help="draw a stored call as a PNG: who spoke when, barge-ins, tools, keys",
        description="Draw a stored call, as gateway demo draws its call: the caller's and the agent's "
        "speech (the waveforms when the call was recorded), cut audio, barge-ins, tools, keys, the hang-up.")
    timeline.add_argument("call_sid", metavar="CALL_SID", help="the call's Twilio SID (CA...), as history lists it")
    timeline.add_argument("--out", metavar="PNG", help="the file to write (default: CALL_SID.png)")
    timeline.add_argument("--width", type=_positive, default=1600, help="in pixels (480 to 8192; default 1600)")
    timeline.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
    timeline.set_defaults(handler=_calls_timeline)

    twilio = commands.add_parser("twilio", help="Twilio account operations")
    twilio_commands = twilio.add_subparsers(dest="twilio_command", metavar="COMMAND", required=True)
    configure = twilio_commands.add_parser(
        "configure-number",
        help="point a Twilio number's voice webhook at this gateway",
        description="Set the number's voice URL to PUBLIC_URL/twilio/voice (POST), printing what changed.",
    )
    configure.add_argument("number", help="the Twilio number, E.164")
    configure.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
    configure.set_defaults(handler=_configure_number)
    return parser


def _configure_logging(level: str, fmt: str = "text") -> None:
    """The one log format of ``gateway serve`` and ``gateway realtime-server``, theirs and their
    servers' (uvicorn's, websockets') alike: ``gateway.logformat``."""
    from gateway.logformat import configure

    configure(level, fmt)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.run import main as demo_main

    if not (args.speed > 0):
        raise SystemExit("--speed must be positive")
    return demo_main(args.out, real=args.real, speed=args.speed)


def _serve(args: argparse.Namespace) -> int:
    # Per-frame matrices are tiny: BLAS threads only add contention across hundreds of calls.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import dataclasses
    import socket

    from gateway.settings import Settings, SettingsError
    from gateway.workers import Supervisor, default_workers, listen, worker_part

    if args.port is None:
        port = os.environ.get("PORT", "8080")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            print(f"gateway: PORT must be a port number, got {port!r}", file=sys.stderr)
            return 2
        args.port = int(port)
    try:
        settings = Settings.from_env(env_file=args.env_file)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    part = worker_part()
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        print("gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    if part is None and workers > 1:  # the supervisor: it serves nothing itself
        _configure_logging(settings.log_level, settings.log_format)
        argv = ["--host", args.host, "--port", str(args.port), "--env-file", args.env_file]
        try:
            supervisor = Supervisor(argv, workers, args.host, args.port, settings.instance_url)
        except OSError as exc:
            print(f"gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 2
        return supervisor.run()

    sockets: list[socket.socket] | None = None
    siblings: tuple[str, ...] = ()
    if part is not None:  # a worker: the supervisor's sockets, its own address
        sockets = [socket.socket(fileno=fd) for fd in part.fds]
        settings = dataclasses.replace(settings, instance_url=part.instance_url)
        siblings = part.siblings
    elif settings.instance_url is not None:  # one process, reached by others at its own port
        from urllib.parse import urlsplit

        internal_port = urlsplit(settings.instance_url).port
        if internal_port != args.port:
            try:
                sockets = [listen(args.host, args.port), listen(args.host, internal_port or 0)]
            except OSError as exc:
                print(f"gateway: cannot listen: {exc}", file=sys.stderr)
                return 2
    from gateway.app import create_app
    from gateway.serving import DrainingServer, uvicorn_config

    try:
        app = create_app(settings, siblings=siblings)
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level, settings.log_format)
    # log_config=None: uvicorn's default config (uvicorn.config.LOGGING_CONFIG) gives its loggers
    # their own handlers and formats and stops them propagating; without it, uvicorn.error and
    # uvicorn.access lines reach the root handler above, in the gateway's one format.
    if settings.metrics_port is not None and settings.metrics and (part is None or part.index == 0):
        # A thread of prometheus_client's own: scrapes never touch the event loop. With
        # workers, the first serves it, for all (gathered in that thread).
        _serve_metrics_port(app.state.gateway, args.host, settings.metrics_port)
    config = uvicorn_config(app, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                            log_config=None)
    DrainingServer(config, app.state.gateway, settings.drain_timeout_s).run(sockets=sockets)
    return 0


def _serve_metrics_port(gateway, host: str, port: int) -> None:  # noqa: ANN001 - gateway.app.Gateway
    from prometheus_client import start_http_server

    from gateway.metrics import gathered_registry
    from gateway.web.internal import METRICS_PATH

    peers = gateway.peers
    registry = gateway.metrics.registry
    if peers.siblings:
        registry = gathered_registry(gateway.metrics, lambda: [text for url in peers.siblings
                                                               if (text := peers.fetch(url, METRICS_PATH))])
    server, _ = start_http_server(port, addr=host, registry=registry)
    logging.getLogger("gateway.app").info("metrics on http://%s:%d/metrics", host, server.server_port)


def _realtime_server(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from gateway.testing.realtime import serve_forever

    _configure_logging("INFO")

    async def run() -> None:
        # SIGTERM (a supervisor, a container stop) ends it as Ctrl-C does: cleanly, status 0.
        # Ctrl-C is asyncio.run's own; a shell that started it in the background may have set
        # SIGINT to be ignored, and SIGTERM still works then.
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await serve_forever(args.host, args.port, pace=args.pace)
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _caller(args: argparse.Namespace) -> int:
    import asyncio
    import wave

    from gateway.audio import ulaw_to_pcm16
    from gateway.testing.caller import load_audio, run_call

    token = args.auth_token or _setting("TWILIO_AUTH_TOKEN")
    audio = load_audio(args.say) if args.say else None
    caller = asyncio.run(
        run_call(args.webhook, auth_token=token, audio=audio, connect_url=args.connect_url, listen_s=args.listen)
    )
    print(f"call {caller.call_sid}: heard {caller.heard_ms / 1000:.2f} s of the agent in "
          f"{len(caller.heard_segments())} stretch(es); {len(caller.clears)} clear(s); "
          f"{len(caller.marks_echoed)} mark(s) echoed; closed by the {caller.closed_by} "
          f"(code {caller.close_code})")
    if caller.invalid_count or caller.errors:
        print(f"  {caller.invalid_count} invalid message(s) from the gateway; errors: {caller.errors}")
    if args.heard:
        with wave.open(args.heard, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(ulaw_to_pcm16(caller.heard_timeline()))
        print(f"  wrote what the caller heard to {args.heard}")
    return 0 if caller.heard_ms > 0 and not caller.errors else 1


def _api(method: str, url: str, payload: dict | None = None) -> tuple[int, dict]:
    """A request to a running gateway's API, with GATEWAY_API_KEY (environment or .env)."""
    import json
    import urllib.error
    import urllib.request

    key = _setting("GATEWAY_API_KEY")
    if not key:
        raise SystemExit("gateway: GATEWAY_API_KEY is not set (environment or .env)")
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except urllib.error.URLError as exc:
        raise SystemExit(f"gateway: cannot reach {url}: {exc.reason}") from exc


def _setting(name: str, env_file: str = ".env") -> str | None:
    """One setting, for the commands that need no full ``Settings``: the environment's, else the
    ``.env`` file's, read by the same parser as ``Settings.from_env``."""
    from pathlib import Path

    from gateway.settings import read_env_file

    if os.environ.get(name):
        return os.environ[name]
    return read_env_file(Path(env_file)).get(name) if Path(env_file).is_file() else None


def _call(args: argparse.Namespace) -> int:
    context = {}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"gateway: --context expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        context[key] = value
    payload = {"to": args.to, "context": context}
    if args.agent:
        payload["agent"] = args.agent
    if args.from_:
        payload["from"] = args.from_
    status, body = _api("POST", args.url.rstrip("/") + "/calls", payload)
    if status != 201:
        print(f"gateway: call refused ({status}): {body.get('error', body)}", file=sys.stderr)
        return 1
    print(f"calling {body['to']} from {body['from']}: call {body['call_sid']}")
    return 0


def _calls_live(args: argparse.Namespace) -> int:
    status, body = _api("GET", args.url.rstrip("/") + "/calls")
    if status != 200:
        print(f"gateway: {status}: {body.get('error', body)}", file=sys.stderr)
        return 1
    rows = body["calls"]
    for url in body.get("unreachable", []):
        print(f"gateway: instance {url} did not answer: its calls are not listed", file=sys.stderr)
    if not rows:
        print("no calls in progress")
        return 0
    several = body.get("instances", 1) > 1
    print(f"{'CALL SID':<36} {'DIR':<9} {'FROM':<16} {'TO':<16} {'AGENT':<20} {'DURATION':>8}"
          + ("  INSTANCE" if several else ""))
    for c in rows:
        print(f"{c['call_sid']:<36} {c['direction']:<9} {c['from']:<16} {c['to']:<16} {c['agent']:<20} {c['duration_s']:>7.0f}s"
              + (f"  {c.get('instance') or '-'}" if several else ""))
    return 0


def _calls_hangup(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    status, body = _api("POST", f"{args.url.rstrip('/')}/calls/{quote(args.call_sid, safe='')}/hangup")
    if status != 202:
        print(f"gateway: {status}: {body.get('error', body)}", file=sys.stderr)
        return 1
    print(f"call {body['call_sid']} is ending (on {body['instance']})")
    return 0


# --- The stored calls (gateway.store) ------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


_AGO = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _since(text: str) -> float:
    """``--since``: Unix seconds from ``30m``/``1h``/``2d``/``1w`` ago, a date (its midnight,
    UTC) or an ISO 8601 time (UTC if it names no offset)."""
    import datetime
    import re
    import time

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match:
        return time.time() - float(match[1]) * _AGO[match[2]]
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a time ago (30m, 1h, 2d, 1w), a date (2026-11-30) or an ISO 8601 time, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _store_settings(env_file: str):
    """The settings the call store needs, read as ``gateway serve`` reads them (the environment
    over the ``.env`` file, checked by the same rules). Reading the records needs no Twilio or
    OpenAI credentials, so only ``GATEWAY_DATA_DIR`` and ``GATEWAY_DATABASE_URL`` are taken;
    the settings a running gateway requires get stand-ins that nothing here reads."""
    from pathlib import Path

    from gateway.settings import Settings, read_env_file

    values = read_env_file(Path(env_file)) if Path(env_file).is_file() else {}
    values.update(os.environ)
    store = {name: values[name] for name in ("GATEWAY_DATA_DIR", "GATEWAY_DATABASE_URL") if name in values}
    stand_ins = {"PUBLIC_URL": "http://127.0.0.1", "TWILIO_ACCOUNT_SID": "-", "TWILIO_AUTH_TOKEN": "-",
                 "OPENAI_API_KEY": "-"}
    return Settings.from_mapping({**stand_ins, **store})


class _NoStore(Exception):
    """The stored-call commands cannot read the store: the message says why and where."""


def _read_store(args: argparse.Namespace, read):
    """``(settings, where, read(store))`` from the store the settings name (``--env-file``),
    or the exit status 1 after saying why not: bad settings, no SQLite file yet (reading never
    creates one), a database away."""
    from gateway.settings import SettingsError
    from gateway.store import StoreError, open_store

    try:
        try:
            settings = _store_settings(args.env_file)
            store = open_store(settings)
        except (SettingsError, StoreError) as exc:
            raise _NoStore(str(exc)) from exc
        where = getattr(store, "where", store.kind)
        path = getattr(store, "path", None)
        if store.kind == "sqlite" and path is not None and not path.is_file():
            raise _NoStore(f"no call store at {path.resolve()} (GATEWAY_DATA_DIR={settings.data_dir}): "
                           "gateway serve writes it there when its first call ends")
        try:
            return settings, where, read(store)
        except Exception as exc:  # the driver's own: a locked file, a database away, a bad password
            raise _NoStore(f"cannot read the call store ({where}): {exc}") from exc
        finally:
            store.close()
    except _NoStore as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1


def _utc(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):  # none, or not a time
        return "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f}s" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _calls_history(args: argparse.Namespace) -> int:
    import json

    got = _read_store(args, lambda store: store.history(args.since, args.limit))
    if isinstance(got, int):
        return got
    _, _, rows = got
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no stored calls" + (" since then" if args.since is not None else ""))
        return 0
    print(f"{'STARTED (UTC)':<19}  {'CALL SID':<34}  {'DIR':<8}  {'FROM':<15}  {'TO':<15}  {'AGENT':<14}  "
          f"{'LENGTH':>7}  {'BARGE':>5}  {'REC':<3}  ENDED")
    for c in rows:
        figures = c.get("figures") if isinstance(c.get("figures"), dict) else {}
        text = {key: str(c.get(key) or "-") for key in ("call_sid", "direction", "from", "to", "agent")}
        print(f"{_utc(c.get('started_at')):<19}  {text['call_sid']:<34}  {text['direction']:<8}  "
              f"{text['from']:<15}  {text['to']:<15}  {text['agent'][:14]:<14}  "
              f"{_seconds(c.get('duration_s')):>7}  {figures.get('barge_ins', 0)!s:>5}  "
              f"{'yes' if c.get('recording') else '-':<3}  {c.get('end_reason') or '(in progress)'}")
    return 0


def _get_call(args: argparse.Namespace):
    """``(settings, stored call)``, or the exit status after saying why not."""
    got = _read_store(args, lambda store: store.get(args.call_sid))
    if isinstance(got, int):
        return got
    settings, where, call = got
    if call is None:
        print(f"gateway: no call {args.call_sid} in the call store ({where})", file=sys.stderr)
        return 1
    return settings, call


def _calls_show(args: argparse.Namespace) -> int:
    import json

    got = _get_call(args)
    if isinstance(got, int):
        return got
    settings, call = got
    if args.json:
        print(json.dumps(call, indent=2, ensure_ascii=False))
        return 0
    for line in _show_lines(call, settings.data_dir):
        print(line)
    return 0


def _show_lines(call: dict, data_dir) -> list[str]:
    """``gateway calls show``: the call, readable on a terminal."""
    from gateway.recording import stored_recording

    def rows(key: str) -> list[dict]:  # the stored lists, skipping what is not an object
        value = call.get(key)
        return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []

    def at(row: dict) -> str:
        t = row.get("t")
        return f"{t:8.3f}s" if isinstance(t, (int, float)) else f"{'?':>8} "

    figures = call.get("figures") if isinstance(call.get("figures"), dict) else {}
    recording = call.get("recording")
    path = stored_recording(data_dir, recording)
    if path is not None:
        recording = f"{path}" + ("" if path.is_file() else " (gone)")
    elif recording:
        recording = f"{recording!r}, outside the data directory: not read"
    lines = [
        f"call {call.get('call_sid')} ({call.get('direction')}): {call.get('from')} -> {call.get('to')}, "
        f"agent {call.get('agent') or '-'}",
        f"started {_utc(call.get('started_at'))} UTC, {_seconds(call.get('duration_s'))}, "
        f"ended: {call.get('end_reason') or '(in progress)'}",
        f"recording: {recording or 'none'}",
        "",
        "figures:",
    ]
    lines += [f"  {name:<20} {value}" for name, value in figures.items()]
    lines += ["", "transcript:"]
    for item in rows("transcript"):
        kind, role = item.get("type"), item.get("role")
        if kind == "message":
            who = {"user": "caller", "assistant": "agent"}.get(role, role or "?")
            lines.append(f"  {who:<7} {item.get('text') or '(no transcript)'}")
        elif kind == "function_call":
            output = item.get("output")
            lines.append(f"  {'tool':<7} {item.get('name')}({item.get('arguments') or ''})"
                         + (f" -> {output}" if output is not None else " (no result)"))
        elif kind == "call_event":
            fields = ", ".join(f"{k}={v}" for k, v in item.items() if k not in ("type", "event"))
            lines.append(f"  {'call':<7} [{item.get('event')}{': ' + fields if fields else ''}]")
    tools = rows("tool_calls")
    lines += ["", "tool calls:" if tools else "tool calls: none"]
    for c in tools:
        output = c.get("output")
        lines.append(f"  {at(c)}  {c.get('tool')}({c.get('arguments') or ''})"
                     + (f" -> {output}" if output is not None else " (no result)"))
    keys = rows("keypresses")
    lines += ["", "keypresses:" if keys else "keypresses: none"]
    for k in keys:
        lines.append(f"  {at(k)}  {k.get('digit')}" + ("  (collected)" if k.get("collected") else ""))
    lines += ["", "events (seconds from the stream's start):"]
    for e in rows("events"):
        fields = "  ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "event"))
        lines.append(f"  {at(e)}  {e.get('event')!s:<18} {fields}".rstrip())
    return lines


def _calls_timeline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.calltimeline import timeline_png
    from gateway.recording import stored_recording

    got = _get_call(args)
    if isinstance(got, int):
        return got
    settings, call = got
    wav = stored_recording(settings.data_dir, call.get("recording"))
    if wav is not None and not wav.is_file():
        print(f"gateway: the recording {wav} is gone (GATEWAY_RECORDING_RETENTION_DAYS?): drawing the call "
              "from its events", file=sys.stderr)
    out = Path(args.out or f"{args.call_sid}.png")
    png = timeline_png(call, wav, width=args.width)
    try:
        out.write_bytes(png)
    except OSError as exc:
        print(f"gateway: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    source = "its recording" if wav is not None and wav.is_file() else "its events"
    print(f"wrote {out}: call {args.call_sid}, drawn from {source}")
    return 0


def _configure_number(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.settings import Settings, SettingsError
    from gateway.twilio.rest import TwilioRest, TwilioRestError

    try:
        settings = Settings.from_env(env_file=args.env_file)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    rest = TwilioRest(settings.twilio_account_sid, settings.twilio_auth_token, base_url=settings.twilio_api_base_url)
    voice_url = settings.public("/twilio/voice")

    async def configure() -> int:
        number = await rest.find_number(args.number)
        if number is None:
            print(f"gateway: {args.number} is not a number of account {settings.twilio_account_sid}", file=sys.stderr)
            return 1
        if (number.voice_url, (number.voice_method or "").upper()) == (voice_url, "POST"):
            print(f"{args.number}: voice webhook already POST {voice_url}; nothing changed")
            return 0
        await rest.configure_number(number.sid, voice_url, "POST")
        print(f"{args.number}: voice webhook {number.voice_method or '-'} {number.voice_url or '(none)'} -> POST {voice_url}")
        return 0

    try:
        return asyncio.run(configure())
    except TwilioRestError as exc:
        print(f"gateway: Twilio refused: {exc}", file=sys.stderr)
        return 1
    finally:
        rest.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
