"""The ``gateway`` command line. It composes; the logic lives in the packages it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=(
            "Telephony gateway: answers Twilio phone calls and bridges them, over Media "
            "Streams, to realtime voice agents built with the OpenAI Agents SDK."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway (Twilio webhook + Media Streams WebSocket)",
        description="Run the gateway under uvicorn. Settings come from the environment and .env "
        "(see .env.example).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.add_argument("--env-file", default=".env", help="settings file (default .env; missing is fine)")
    serve.set_defaults(handler=_serve)

    realtime = commands.add_parser(
        "realtime-server",
        help="run the local OpenAI Realtime server (no account needed)",
        description="Serve the OpenAI Realtime GA wire protocol locally, for trying the gateway "
        "and testing agents with no OpenAI account: point OPENAI_REALTIME_URL at the URL it prints. "
        "It answers with synthesized speech-like tones and a built-in voice activity detector.",
    )
    realtime.add_argument("--host", default="127.0.0.1")
    realtime.add_argument("--port", type=int, default=8765)
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
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def _serve(args: argparse.Namespace) -> int:
    # Per-frame matrices are tiny: BLAS threads only add contention across hundreds of calls.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(env_file=args.env_file)
        app = create_app(settings)
    except (SettingsError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), ws="websockets-sansio")
    return 0


def _realtime_server(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.testing.realtime_server import serve_forever

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
    from gateway.settings import read_env_file
    from gateway.testing.twilio_caller import load_audio, run_call

    token = args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN")
    if token is None and os.path.isfile(".env"):
        token = read_env_file(__import__("pathlib").Path(".env")).get("TWILIO_AUTH_TOKEN")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
