"""Who may use the console: signed session tokens, and a brake on guessing the key.

Both are sans-I/O: times come in as ``now`` (Unix seconds), nothing here reads a clock, a
socket or a cookie.

**Session tokens.** Logging in with ``GATEWAY_API_KEY`` gives the browser a token in a cookie,
so that the key itself is sent once, in a POST body, and never sits in a URL, a history or a
log. A token is ``v1.<expiry>.<nonce>.<mac>``: an HMAC-SHA256 over the expiry and a random
nonce, with a key derived from the API key (domain-separated, so a token is never a valid API
key or a call token). Hence:

- no server-side session table: every instance sharing the API key accepts every other's
  tokens (a console behind a load balancer);
- changing the API key logs everyone out;
- a token expires by itself (``SESSION_TTL_S``); logging out remembers the token as revoked
  on this instance until it would have expired (``MAX_REVOKED`` at most, the oldest forgotten).

**Login throttle.** A peer that gets the key wrong ``MAX_FAILURES`` times within
``FAILURE_WINDOW_S`` is refused (even with the right key) until the window has passed since
its first failure in it. Peers are remembered at most ``MAX_PEERS``, the least recently seen
forgotten first, so a crowd of addresses costs bounded memory.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["FAILURE_WINDOW_S", "MAX_FAILURES", "SESSION_TTL_S", "LoginThrottle", "SessionTokens"]

#: How long a console login lasts.
SESSION_TTL_S = 12 * 3600
#: Revoked tokens remembered (logouts), at most.
MAX_REVOKED = 4096
#: Wrong keys a peer may send within the window before it is refused for the rest of it.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
#: Peers whose failures are remembered, at most.
MAX_PEERS = 4096

_VERSION = "v1"


class SessionTokens:
    """Issues and checks console session tokens (see the module's docstring)."""

    def __init__(self, api_key: str, ttl_s: int = SESSION_TTL_S) -> None:
        if not api_key:
            raise ValueError("the console needs an API key")
        self._key = hmac.new(api_key.encode(), b"gateway console session v1", hashlib.sha256).digest()
        self.ttl_s = ttl_s
        #: token -> its expiry, oldest first.
        self._revoked: collections.OrderedDict[str, int] = collections.OrderedDict()

    def issue(self, now: float) -> str:
        expiry = int(now) + self.ttl_s
        payload = f"{_VERSION}.{expiry}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._mac(payload)}"

    def valid(self, token: str | None, now: float) -> bool:
        """Whether ``token`` is one of ours, unexpired and not logged out."""
        expiry = self._expiry(token)
        return expiry is not None and now < expiry and token not in self._revoked

    def revoke(self, token: str | None, now: float) -> None:
        """Logging out: the token is refused from now on (by this instance)."""
        expiry = self._expiry(token)
        if expiry is None or now >= expiry or token is None:
            return
        self._revoked[token] = expiry
        while self._revoked and (len(self._revoked) > MAX_REVOKED or next(iter(self._revoked.values())) <= now):
            self._revoked.popitem(last=False)

    def _expiry(self, token: str | None) -> int | None:
        """The token's expiry if its MAC is ours, else None."""
        if not token or len(token) > 200:
            return None
        payload, _, mac = token.rpartition(".")
        version, _, rest = payload.partition(".")
        expiry, _, nonce = rest.partition(".")
        if version != _VERSION or not expiry.isdigit() or not nonce:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        return int(expiry)

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()


@dataclass
class _Failures:
    first: float  # the first failure of the current window
    count: int


class LoginThrottle:
    """Counts wrong keys per peer (see the module's docstring)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 max_peers: int = MAX_PEERS) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_peers = max_peers
        self._peers: collections.OrderedDict[str, _Failures] = collections.OrderedDict()

    def __len__(self) -> int:
        """Peers remembered."""
        return len(self._peers)

    def retry_after(self, peer: str, now: float) -> float:
        """Seconds until ``peer`` may try again; 0: it may try now."""
        failures = self._peers.get(peer)
        if failures is None:
            return 0.0
        if now - failures.first >= self.window_s:
            del self._peers[peer]
            return 0.0
        if failures.count < self.max_failures:
            return 0.0
        return failures.first + self.window_s - now

    def failed(self, peer: str, now: float) -> int:
        """A wrong key from ``peer``: how many within its window so far."""
        failures = self._peers.get(peer)
        if failures is None or now - failures.first >= self.window_s:
            failures = self._peers[peer] = _Failures(now, 0)
        failures.count += 1
        self._peers.move_to_end(peer)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        return failures.count

    def succeeded(self, peer: str) -> None:
        """The right key: the peer's failures are forgotten."""
        self._peers.pop(peer, None)
