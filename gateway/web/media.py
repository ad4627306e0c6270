"""``WS /twilio/media``: the Media Streams WebSocket.

Twilio signs the handshake's ``X-Twilio-Signature`` over the ``wss://`` URL exactly as written
in our TwiML, with no parameters (https://www.twilio.com/docs/voice/media-streams/websocket-messages,
https://www.twilio.com/docs/usage/webhooks/webhooks-security); a handshake that does not match
is refused before ``accept``, which uvicorn answers with HTTP 403; the line saying so names the
peer, and is limited per peer (``gateway.ratelog``). Then one call runs until it is over
(``gateway.web.registry``), its per-call token checked on ``start``.
"""

from __future__ import annotations

import logging

from starlette import status
from starlette.websockets import WebSocket

from gateway.ratelog import peer_tag
from gateway.security import TwilioSignatures
from gateway.settings import Settings
from gateway.web.registry import CallRegistry, CallWiring

__all__ = ["MediaEndpoint"]

log = logging.getLogger("gateway.app")


class MediaEndpoint:
    def __init__(self, settings: Settings, signatures: TwilioSignatures, registry: CallRegistry, wiring: CallWiring) -> None:
        self.settings = settings
        self.signatures = signatures
        self.registry = registry
        self.wiring = wiring

    async def stream(self, websocket: WebSocket) -> None:
        if not self.handshake_signed(websocket):
            await websocket.close(status.WS_1008_POLICY_VIOLATION)  # before accept: the upgrade is refused
            return
        await websocket.accept()
        await self.registry.run(websocket, self.wiring)

    def handshake_signed(self, websocket: WebSocket) -> bool:
        url = self.settings.stream_url
        if self.settings.insecure_skip_signature or self.signatures.stream_valid(url, websocket.headers.get("x-twilio-signature")):
            return True
        log.warning("%s media stream refused: X-Twilio-Signature does not match %s", peer_tag(websocket.client), url)
        return False
