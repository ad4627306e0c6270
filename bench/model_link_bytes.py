"""Bytes on the model connection, with and without permessage-deflate: what
``GATEWAY_MODEL_COMPRESSION=none`` costs in bandwidth, and what deflate costs the gateway's CPU.

    python bench/model_link_bytes.py

Real speech (the demo's clips, 50 s of synthetic speech with its pauses) and silence, framed
as the gateway sends and the Realtime API returns them: 20 ms ``input_audio_buffer.append``
events and 100 ms ``response.output_audio.delta`` events, in G.711 and in PCM16 24 kHz (the
gateway's resampler). Each message is compressed as one connection would: one
``PerMessageDeflate`` context for the whole stream (context takeover), with the parameters
``websockets`` negotiates between its own client and server (12-bit windows, memLevel 5; a
server that took a 15-bit window would compress a little better). The byte counts are
deterministic. The CPU figure is the gateway's side of one call-second of speech: 50 appends
compressed and 10 deltas decompressed by the extension (``encode``/``decode``, zlib
included; framing and system calls not), the best of several repeats.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.extensions.permessage_deflate import PerMessageDeflate  # noqa: E402
from websockets.frames import OP_TEXT, Frame  # noqa: E402

from gateway.audio.g711 import ulaw_to_pcm16  # noqa: E402
from gateway.audio.resample import Resampler  # noqa: E402

#: A stream's bytes on the connection: (as sent uncompressed, deflated).
Sizes = tuple[int, int]


def chunks(audio: bytes, size: int) -> list[bytes]:
    """Every whole ``size`` bytes of ``audio``: one message's audio each."""
    return [audio[i:i + size] for i in range(0, len(audio) - size + 1, size)]


def append(audio: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})


def delta(audio: bytes) -> str:
    return json.dumps({"type": "response.output_audio.delta", "event_id": "event_CSxPMoAbqM5PMxu3MMrcp",
                       "response_id": "resp_CSxPMnkqzXN4sN53vr7Jw", "item_id": "item_CSxPMmKnYv7SHfQT8tNpC",
                       "output_index": 0, "content_index": 0, "delta": base64.b64encode(audio).decode()})


def stream(audio: bytes, chunk: int, event) -> Sizes:  # noqa: ANN001
    """Every whole ``chunk`` of ``audio`` as one message of one connection."""
    deflate = extension()
    raw = packed = 0
    for piece in chunks(audio, chunk):
        text = event(piece).encode()
        raw += len(text)
        packed += len(deflate.encode(Frame(OP_TEXT, text)).data)
    return raw, packed


def extension() -> PerMessageDeflate:
    return PerMessageDeflate(remote_no_context_takeover=False, local_no_context_takeover=False,
                             remote_max_window_bits=12, local_max_window_bits=12, compress_settings={"memLevel": 5})


def gateway_cpu_us(up: bytes, up_chunk: int, down: bytes, down_chunk: int, seconds: float) -> float:
    """Microseconds of CPU per call-second the gateway's side of deflate takes: its appends
    compressed, the server's deltas (compressed by a server context) decompressed."""
    sent = [Frame(OP_TEXT, append(piece).encode()) for piece in chunks(up, up_chunk)]
    server = extension()
    received = [server.encode(Frame(OP_TEXT, delta(piece).encode())) for piece in chunks(down, down_chunk)]
    best = float("inf")
    for _ in range(5):
        ours = extension()
        start = time.process_time()
        for frame in sent:
            ours.encode(frame)
        for frame in received:
            ours.decode(frame)
        best = min(best, time.process_time() - start)
    return best / seconds * 1e6


def main() -> None:
    clips = Path(__file__).resolve().parent.parent / "gateway" / "demo" / "clips"
    speech = b"".join(path.read_bytes() for path in sorted(clips.glob("*.ulaw")))
    seconds = len(speech) / 8000
    speech24 = Resampler(8000, 24000).process(ulaw_to_pcm16(speech))
    silence = b"\xff" * len(speech)
    silence24 = bytes(len(speech24))
    rows = [
        ("G.711, caller -> model (20 ms appends)", stream(speech, 160, append), stream(silence, 160, append)),
        ("G.711, model -> caller (100 ms deltas)", stream(speech, 800, delta), stream(silence, 800, delta)),
        ("PCM16, caller -> model (20 ms appends)", stream(speech24, 960, append), stream(silence24, 960, append)),
        ("PCM16, model -> caller (100 ms deltas)", stream(speech24, 4800, delta), stream(silence24, 4800, delta)),
    ]
    print(f"{seconds:.1f} s of speech; kB per call-second on the model connection, each direction\n")
    print(f"{'':40} {'speech: none':>13} {'deflate':>8} {'ratio':>6}   {'silence: none':>13} {'deflate':>8}")
    for name, (raw, packed), (quiet_raw, quiet_packed) in rows:
        print(f"{name:40} {raw / seconds / 1000:13.1f} {packed / seconds / 1000:8.1f} {packed / raw:6.0%}"
              f"   {quiet_raw / seconds / 1000:13.1f} {quiet_packed / seconds / 1000:8.1f}")
    print("\nthe gateway's CPU for deflate (appends compressed, deltas decompressed), us per call-second:")
    print(f"  speech both ways: G.711 {gateway_cpu_us(speech, 160, speech, 800, seconds):.0f}, "
          f"PCM16 {gateway_cpu_us(speech24, 960, speech24, 4800, seconds):.0f}")
    print(f"  a silent caller, speech back (bench/load.py's calls): G.711 "
          f"{gateway_cpu_us(silence, 160, speech, 800, seconds):.0f}, "
          f"PCM16 {gateway_cpu_us(silence24, 960, speech24, 4800, seconds):.0f}")


if __name__ == "__main__":
    main()

