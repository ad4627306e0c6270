"""The web console at ``/console``: the calls in progress as they happen, the recent calls, and
each call's transcript, events, timeline picture and recording. Served by the gateway itself:
HTML, a style sheet and plain ES modules from ``static/``, no build step (docs/console.md).

Access is behind ``GATEWAY_API_KEY``: a login form takes the key once (in a POST body, never
a URL) and sets a signed, expiring session cookie (HttpOnly, SameSite=Strict, Secure under an
https ``PUBLIC_URL``). Every page and every piece of data checks it. No key configured: no
console (404).

- ``GET /console``: the live calls (who is speaking, duration, agent; the page asks
  ``api/live`` every second) and the recent calls (``api/calls``);
- ``GET /console/calls/{call_sid}``: one finished call (``api/calls/{call_sid}``, its
  ``timeline.png`` and ``recording.wav``);
- ``GET|POST /console/login``, ``POST /console/logout``; ``GET /console/static/{name}``.

Why the page asks every second rather than holding a Server-Sent Events stream open: uvicorn
waits for every response in progress before it shuts down (``timeout_graceful_shutdown`` is
unset), so an open stream in a forgotten browser tab would hold up every deploy. A request a
second costs the gateway microseconds and ends.

Modules: ``sessions`` (tokens and the login throttle, sans-I/O), ``calls`` (what is shown, read
in threads), ``assets`` (the files), ``endpoints`` (``Console``: the routes).
"""

from gateway.web.console.endpoints import COOKIE, Console

__all__ = ["COOKIE", "Console"]
