"""Reading a cProfile of the gateway: where its CPU goes, by library.

Every function's *own* time (``tottime``: not counting what it calls) goes to one group, so
the groups add up to the whole profile. Builtins are grouped by what they are (a socket
``send`` is a system call; ``zlib`` is the WebSocket compression; ``binascii`` is base64), and
generic ones (``isinstance``, ``dict.get``, ``len``; ``contextlib``, ``enum``...) are charged to
whoever called them, in proportion to the time each caller spent in them.
"""

from __future__ import annotations

import pstats
from pathlib import Path

from bench.harness import ROOT

#: (group, substrings of the function's file or builtin name), first match wins.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("socket system calls", ("_socket.socket", "select.epoll")),
    ("zlib (WebSocket permessage-deflate)", ("zlib", "permessage_deflate")),
    ("JSON", ("/json/", "_json", "json.")),
    ("base64", ("binascii", "base64")),
    ("gateway: transcoding (gateway/audio)", ("/gateway/audio/",)),
    ("gateway: Twilio protocol (gateway/twilio)", ("/gateway/twilio/",)),
    ("gateway: bridge (gateway/bridge, app)", ("/gateway/",)),
    ("Agents SDK (agents.realtime)", ("/agents/",)),
    ("openai types + pydantic", ("/openai/", "pydantic")),
    ("websockets", ("/websockets/",)),
    ("uvicorn + starlette", ("/uvicorn/", "/starlette/")),
    ("numpy", ("numpy",)),
    ("logging", ("/logging/",)),
    ("asyncio + selectors", ("/asyncio/", "selectors.py", "_asyncio", "_contextvars", "heapq")),
)
OTHER = "other"


def group_of(key: tuple[str, int, str]) -> str | None:
    """The function's group; None for a generic builtin or standard-library function."""
    filename, _, name = key
    text = filename if filename != "~" else name
    for group, needles in GROUPS:
        if any(needle in text for needle in needles):
            return group
    if filename == "~" or "/lib/python3" in filename and "site-packages" not in filename:
        return None
    return OTHER


def _charge(stats: pstats.Stats, key: tuple[str, int, str], seconds: float, depth: int = 0):
    """(group, seconds) for ``seconds`` spent in ``key``: its group, or its callers'."""
    group = group_of(key)
    callers = stats.stats[key][4]  # type: ignore[attr-defined]
    spent = sum(v[2] for v in callers.values()) if callers else 0.0
    if group is not None or depth >= 4 or spent <= 0:
        yield group or OTHER, seconds
        return
    for caller, v in callers.items():
        yield from _charge(stats, caller, seconds * v[2] / spent, depth + 1)


def load(path: Path) -> pstats.Stats:
    return pstats.Stats(str(path))


def grouped(stats: pstats.Stats) -> list[tuple[str, float]]:
    """(group, own seconds), largest first."""
    totals: dict[str, float] = {}
    for key, (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        for group, seconds in _charge(stats, key, tottime):
            totals[group] = totals.get(group, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: -item[1])


def total(stats: pstats.Stats) -> float:
    return sum(tottime for (_, _, tottime, _, _) in stats.stats.values())  # type: ignore[attr-defined]


def top(stats: pstats.Stats, by: str, n: int = 15, skip: tuple[str, ...] = ()) -> list[tuple[str, int, float, float]]:
    """(function, calls, own seconds, cumulative seconds), sorted by ``tottime`` or ``cumtime``;
    functions whose label contains one of ``skip`` are left out."""
    rows = []
    for key, (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        label = describe(key)
        if any(s in label for s in skip):
            continue
        rows.append((label, ncalls, tottime, cumtime))
    index = 2 if by == "tottime" else 3
    return sorted(rows, key=lambda r: -r[index])[:n]


def describe(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "/lib/python3", f"{ROOT}/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3":
                filename = filename.split("/", 1)[-1]
            break
    return f"{filename}:{line}({name})"
