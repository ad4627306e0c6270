"""The gateway's web edge: one concept per module, composed by ``gateway.app.create_app``.

- ``registry``: the calls of this instance (in progress, recently finished) and what Twilio
  says about them; the one module here that knows ``gateway.bridge.call``.
- ``twilio_forms``: reading a signed Twilio webhook form (size, type, encoding, signature).
- ``twiml``: the TwiML we answer with (connect the stream, or redirect elsewhere).
- ``webhooks``: ``POST /twilio/voice``, ``/twilio/status`` and ``/twilio/amd``.
- ``media``: ``WS /twilio/media``: the handshake's signature, then one call.
- ``calls_api``: ``POST /calls`` and ``GET /calls`` (bearer ``GATEWAY_API_KEY``).
- ``drain``: no new calls, the ones in progress go on (SIGTERM, see ``gateway.serving``).
- ``health``: ``GET /healthz`` and ``GET /readyz``.
- ``console``: the web console at ``/console`` (login with ``GATEWAY_API_KEY``; live calls,
  recent calls from the store, a call's page), plain HTML and ES modules from ``static/``.
- ``startup``: the start-up work (SDK warm-up, insecure-mode warning), run once, by a lifespan
  or else on first use; closing the Twilio REST client at shutdown.

Endpoints accept, check, wire and hand over. Every module logs as ``gateway.app``, the web
edge's logger name from before this package existed, so log filters keep working.
"""
