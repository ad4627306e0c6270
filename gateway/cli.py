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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
