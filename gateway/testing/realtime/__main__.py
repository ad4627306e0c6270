"""``python -m gateway.testing.realtime``: the local Realtime server, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from gateway.testing.realtime.server import serve_forever


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.testing.realtime",
        description="A local OpenAI Realtime server that answers every response with a "
                    "synthesized reply.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pace", type=float, default=1.0,
                        help="audio speed relative to real time (default 1.0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.host, args.port, pace=args.pace))


if __name__ == "__main__":  # pragma: no cover
    main()
