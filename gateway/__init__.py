"""Telephony gateway: Twilio Media Streams phone calls bridged to realtime voice agents.

Layers (each a folder, each core sans-I/O):

- ``gateway.twilio``: the Twilio Media Streams wire protocol (typed messages, strict parser,
  per-stream state machine).
- ``gateway.audio``: G.711 mu-law codec, streaming resamplers and the per-direction
  transcoders the bridge uses.
"""

__version__ = "0.1.0"
