"""The ``gateway`` command line. It composes; the logic lives in the packages it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__


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
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.add_argument("--env-file", default=".env", metavar="PATH", help=_ENV_FILE_HELP)
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

    calls = commands.add_parser("calls", help="list the calls in progress on a running gateway (GET /calls)")
    calls.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    calls.set_defaults(handler=_calls)

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
    from gateway.app import create_app
    from gateway.serving import DrainingServer, uvicorn_config
    from gateway.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(env_file=args.env_file)
        app = create_app(settings)
    except (SettingsError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level, settings.log_format)
    # log_config=None: uvicorn's default config (uvicorn.config.LOGGING_CONFIG) gives its loggers
    # their own handlers and formats and stops them propagating; without it, uvicorn.error and
    # uvicorn.access lines reach the root handler above, in the gateway's one format.
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        # A thread of prometheus_client's own: scrapes never touch the event loop.
        server, _ = start_http_server(settings.metrics_port, addr=args.host, registry=app.state.gateway.metrics.registry)
        logging.getLogger("gateway.app").info("metrics on http://%s:%d/metrics", args.host, server.server_port)
    config = uvicorn_config(app, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                            log_config=None)
    DrainingServer(config, app.state.gateway, settings.drain_timeout_s).run()
    return 0


def _realtime_server(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.testing.realtime import serve_forever

    _configure_logging("INFO")
    try:
        asyncio.run(serve_forever(args.host, args.port, pace=args.pace))
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


def _calls(args: argparse.Namespace) -> int:
    status, body = _api("GET", args.url.rstrip("/") + "/calls")
    if status != 200:
        print(f"gateway: {status}: {body.get('error', body)}", file=sys.stderr)
        return 1
    rows = body["calls"]
    if not rows:
        print("no calls in progress")
        return 0
    print(f"{'CALL SID':<36} {'DIR':<9} {'FROM':<16} {'TO':<16} {'AGENT':<20} {'DURATION':>8}")
    for c in rows:
        print(f"{c['call_sid']:<36} {c['direction']:<9} {c['from']:<16} {c['to']:<16} {c['agent']:<20} {c['duration_s']:>7.0f}s")
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
