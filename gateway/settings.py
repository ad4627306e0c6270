"""One typed settings object, read once at start from the environment and an optional ``.env``.

Every field is documented in ``.env.example``. Missing or invalid settings fail at start with
one message that names every offending setting; nothing is validated mid-call.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from gateway.audio import AudioMode

TURN_DETECTION_TYPES = ("semantic_vad", "server_vad")
EAGERNESS = ("low", "medium", "high", "auto")
APPROVAL_POLICIES = ("approve", "reject")
#: GATEWAY_MODEL_COMPRESSION: what the model connection offers (gateway.bridge.sdk.realtime_model).
COMPRESSIONS = ("none", "deflate")

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly assistant answering a phone call. Speak naturally and keep "
    "answers short: this is a voice conversation over the telephone, so avoid lists, markdown "
    "and long numbers. If you did not understand the caller, ask them to repeat."
)
DEFAULT_GREETING = "Greet the caller warmly in one short sentence and ask how you can help."
DEFAULT_FALLBACK_SAY = "Sorry, we can't take your call right now. Please try again in a few minutes."


class SettingsError(ValueError):
    """One or more settings are missing or invalid; the message names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


@dataclasses.dataclass(frozen=True)
class Settings:
    #: Public base URL Twilio reaches us at, e.g. https://gw.example.com. The stream URL
    #: (wss://.../twilio/media) and every signature check derive from it, never from headers.
    public_url: str
    twilio_account_sid: str
    twilio_auth_token: str = dataclasses.field(repr=False)
    openai_api_key: str | None = dataclasses.field(default=None, repr=False)
    #: Overrides the model's WebSocket URL (tests and local peers plug in here). When set,
    #: no API key is needed: it is sent only if given.
    openai_realtime_url: str | None = None
    audio_mode: AudioMode = AudioMode.PCM16
    #: ``package.module:attribute``: a RealtimeAgent, or a factory taking the CallInfo.
    agent: str | None = None
    model: str = "gpt-realtime"
    voice: str = "marin"
    instructions: str = DEFAULT_INSTRUCTIONS
    #: What the agent is asked to say first, before the caller speaks; empty: wait for caller.
    greeting: str = DEFAULT_GREETING
    turn_detection: str = "semantic_vad"
    vad_eagerness: str = "auto"
    #: server_vad only: how much silence ends a caller's turn.
    vad_silence_ms: int = 500
    interrupt_response: bool = True
    transcription_model: str = "gpt-4o-mini-transcribe"
    #: What the model connection offers: ``none`` (gateway.bridge.sdk.realtime_model) or
    #: ``deflate`` (permessage-deflate, the Agents SDK's default; the server may decline it).
    #: Deflate saves about 40% of the model link's bytes for about 0.6 ms (G.711) and 1.7 ms
    #: (PCM16) of the gateway's CPU per call-second of speech (bench/model_link_bytes.py).
    model_compression: str = "none"
    #: Marks are sent at most this far apart in the agent's audio: the resolution of what the
    #: gateway knows the caller heard.
    mark_interval_ms: int = 100
    #: Caller audio buffered while the model connects; beyond it, the oldest is dropped.
    inbound_buffer_ms: int = 5000
    #: What to do when a tool needs approval: there is nobody to ask on a phone call.
    tool_approval: str = "reject"
    #: Lifetime of the per-call token in <Parameter> (the stream starts within seconds). Whole
    #: seconds, unlike the other ``_s`` settings: the token carries its expiry as an integer.
    call_token_ttl_s: int = 600
    #: Key for per-call tokens; default derived from the Twilio auth token, so every
    #: instance of one deployment verifies every other's tokens with no shared state.
    call_token_secret: str | None = dataclasses.field(default=None, repr=False)
    #: Local development only: skip X-Twilio-Signature checks (a loud warning is logged).
    insecure_skip_signature: bool = False
    log_level: str = "INFO"
    #: ``text`` (one readable line) or ``json`` (one JSON object a line, with call_sid and
    #: stream_sid where there is a call; uvicorn's lines too): gateway.logformat.
    log_format: str = "text"
    #: Serve ``GET /metrics`` on this port of its own (0: any free port, logged) instead of the
    #: gateway's port, to keep it off the public listener. Unset: on the gateway's port.
    metrics_port: int | None = None
    #: Prometheus metrics at all (``GET /metrics``, the event-loop lag probe); off for a gateway
    #: mounted in an application that exports its own, or to measure their cost.
    metrics: bool = True
    #: Where Twilio's REST API is (tests point it at a local fake); None: Twilio's own.
    twilio_api_base_url: str | None = None
    #: Who ``transfer_call`` may dial: name -> E.164 number or sip: URI. Nothing else, ever.
    transfer_targets: tuple[tuple[str, str], ...] = ()
    #: Silence: check in after this many seconds with nobody speaking (0: never) ...
    silence_check_in_s: float = 10.0
    #: ... and say goodbye and hang up this many seconds after the check-in (0: never).
    silence_give_up_s: float = 10.0
    #: Hard limit on a call's length; the agent says goodbye and hangs up (0: none).
    max_call_s: float = 3600.0
    #: Move a call to a fresh model session this often, carrying the conversation, before the
    #: Realtime API's session lifetime limit (30 min documented in the beta, 60 in GA) (0: never).
    session_rollover_s: float = 1680.0
    #: Bearer token for the gateway's own API (POST/GET /calls). None: the API is off.
    api_key: str | None = dataclasses.field(default=None, repr=False)
    #: The number outbound calls come from (a Twilio number of the account).
    caller_id: str | None = None
    #: Outbound calls: answering-machine detection (Twilio async AMD); the agent is told.
    amd: bool = False
    #: A stream must send ``start`` this soon after the handshake, or it is closed (1008).
    start_timeout_s: float = 10.0
    #: Incoming messages per second a stream may send on average (Twilio: ~55), and in a
    #: burst (a backlog after a network stall); beyond, the stream is closed (1008).
    max_message_rate: int = 200
    max_message_burst: int = 500
    #: Connecting to the model (at the start of a call, or again after it dropped) is retried
    #: with backoff for this long; then the caller gets the fallback.
    model_connect_budget_s: float = 6.0
    #: When the model is not there to speak (a slow first connection, a reconnect, a slow
    #: rollover), the caller hears a short hold message, then a soft tone, from this long after
    #: the model went missing (0: never); no more dead air than this.
    hold_after_s: float = 1.5
    #: The fallback, in the TwiML after ``</Connect>``: Twilio runs it when the gateway ends
    #: the stream without ending the call (the model cannot be reached). Spoken, then dialled.
    fallback_say: str = DEFAULT_FALLBACK_SAY
    fallback_dial: str | None = None
    #: A function tool running longer than this returns a timeout error to the model (0: no
    #: limit). Tools that set their own ``timeout_seconds`` keep it.
    tool_timeout_s: float = 20.0
    #: SIGTERM: calls in progress may go on this long before the process exits anyway.
    drain_timeout_s: float = 600.0
    #: While draining, new calls are sent here (a ``<Redirect>`` to another instance's voice
    #: webhook); unset: the webhook answers 503 and Twilio uses the number's fallback URL.
    drain_redirect_url: str | None = None
    #: Where the other instances of this deployment reach this one (``http://POD_IP:8081``),
    #: for Twilio's callbacks of a call whose stream another instance holds
    #: (``gateway.web.routing``). With ``gateway serve --workers N``, worker ``i`` listens on
    #: this URL's port + ``i``. Unset: a lone instance (workers then use loopback ports).
    instance_url: str | None = None
    #: Where the gateway keeps what lasts: the SQLite call store (``calls.sqlite3``) unless
    #: ``database_url`` names PostgreSQL, and the recordings (``recordings/``). Relative to the
    #: working directory; created when first needed.
    data_dir: Path = Path("gateway-data")
    #: ``postgresql://user:password@host:port/dbname``: the call records go to this PostgreSQL
    #: database (what several instances share) instead of SQLite under ``data_dir``.
    database_url: str | None = dataclasses.field(default=None, repr=False)
    #: Keep a record of every call in the store (``gateway.store``); off: only the metrics,
    #: logs and ``on_call_end`` hook see a finished call.
    store_calls: bool = True
    #: Keypresses taken by ``collect_digits`` (PINs, account numbers) or by an ``on_digit`` hook
    #: (never told to the model) are stored and logged as ``*``, and ``collect_digits``' output
    #: with them; off: kept as pressed.
    redact_digits: bool = True
    #: Record every call: a stereo 8 kHz WAV under ``data_dir/recordings``, the caller on the
    #: left, the agent on the right as the caller heard it (paused while digits are collected).
    record: bool = False
    #: Recordings older than this many days are deleted (0: kept for ever).
    recording_retention_days: int = 30

    def transfer_target(self, name_or_number: str) -> str | None:
        """The allowed dial string for a target name or number, or None if not allowed."""
        wanted = name_or_number.strip()
        for name, target in self.transfer_targets:
            if wanted.lower() == name.lower() or wanted == target:
                return target
        return None

    @property
    def stream_url(self) -> str:
        """The Media Streams URL exactly as written in our TwiML (and signed by Twilio)."""
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/twilio/media"

    def public(self, path: str) -> str:
        """The public URL of one of our HTTP paths, as Twilio requests (and signs) it."""
        return self.public_url.rstrip("/") + path

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read settings: the process environment overrides the ``.env`` file."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        reader = _Reader(env, problems)
        public_url = reader.required("PUBLIC_URL")
        if public_url:
            parts = urlsplit(public_url)
            if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
                problems.append(
                    f"PUBLIC_URL: must be an absolute http(s) URL with no query, got {public_url!r}"
                )
        realtime_url = reader.optional("OPENAI_REALTIME_URL")
        if realtime_url and urlsplit(realtime_url).scheme not in ("ws", "wss"):
            problems.append(f"OPENAI_REALTIME_URL: must be a ws:// or wss:// URL, got {realtime_url!r}")
        api_key = reader.optional("OPENAI_API_KEY")
        if not api_key and not realtime_url:
            problems.append("OPENAI_API_KEY: required (unless OPENAI_REALTIME_URL points at a local server)")
        agent = reader.optional("GATEWAY_AGENT")
        if agent and not re.fullmatch(r"[\w.]+:[\w.]+", agent):
            problems.append(f"GATEWAY_AGENT: expected package.module:attribute, got {agent!r}")
        fields = dict(
            public_url=public_url.rstrip("/") if public_url else "",
            twilio_account_sid=reader.required("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=reader.required("TWILIO_AUTH_TOKEN"),
            openai_api_key=api_key,
            openai_realtime_url=realtime_url,
            audio_mode=reader.choice("GATEWAY_AUDIO_MODE", [m.value for m in AudioMode], "pcm16"),
            agent=agent,
            model=reader.optional("GATEWAY_MODEL") or cls.model,
            voice=reader.optional("GATEWAY_VOICE") or cls.voice,
            instructions=reader.optional("GATEWAY_INSTRUCTIONS") or cls.instructions,
            greeting=env.get("GATEWAY_GREETING", cls.greeting).strip(),
            turn_detection=reader.choice("GATEWAY_TURN_DETECTION", TURN_DETECTION_TYPES, cls.turn_detection),
            vad_eagerness=reader.choice("GATEWAY_VAD_EAGERNESS", EAGERNESS, cls.vad_eagerness),
            vad_silence_ms=reader.integer("GATEWAY_VAD_SILENCE_MS", cls.vad_silence_ms, 100, 10000),
            interrupt_response=reader.boolean("GATEWAY_INTERRUPT_RESPONSE", cls.interrupt_response),
            transcription_model=reader.optional("GATEWAY_TRANSCRIPTION_MODEL") or cls.transcription_model,
            model_compression=reader.choice("GATEWAY_MODEL_COMPRESSION", COMPRESSIONS, cls.model_compression),
            mark_interval_ms=reader.integer("GATEWAY_MARK_INTERVAL_MS", cls.mark_interval_ms, 20, 100),
            inbound_buffer_ms=reader.integer("GATEWAY_INBOUND_BUFFER_MS", cls.inbound_buffer_ms, 0, 60000),
            tool_approval=reader.choice("GATEWAY_TOOL_APPROVAL", APPROVAL_POLICIES, cls.tool_approval),
            call_token_ttl_s=reader.integer("GATEWAY_CALL_TOKEN_TTL_S", cls.call_token_ttl_s, 10, 86400),
            call_token_secret=reader.optional("GATEWAY_CALL_TOKEN_SECRET"),
            insecure_skip_signature=reader.boolean("GATEWAY_INSECURE_SKIP_SIGNATURE", False),
            log_level=reader.choice("GATEWAY_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            log_format=reader.choice("GATEWAY_LOG_FORMAT", ("text", "json"), "text"),
            metrics=reader.boolean("GATEWAY_METRICS", cls.metrics),
            metrics_port=(reader.integer("GATEWAY_METRICS_PORT", 0, 0, 65535)
                          if reader.optional("GATEWAY_METRICS_PORT") is not None else None),
            twilio_api_base_url=reader.optional("TWILIO_API_BASE_URL"),
            transfer_targets=reader.targets("GATEWAY_TRANSFER_TARGETS"),
            silence_check_in_s=reader.seconds("GATEWAY_SILENCE_CHECK_IN_S", cls.silence_check_in_s, 0, 3600),
            silence_give_up_s=reader.seconds("GATEWAY_SILENCE_GIVE_UP_S", cls.silence_give_up_s, 0, 3600),
            max_call_s=reader.seconds("GATEWAY_MAX_CALL_S", cls.max_call_s, 0, 86400),
            session_rollover_s=reader.seconds("GATEWAY_SESSION_ROLLOVER_S", cls.session_rollover_s, 0, 86400),
            api_key=reader.optional("GATEWAY_API_KEY"),
            caller_id=reader.optional("GATEWAY_CALLER_ID"),
            amd=reader.boolean("GATEWAY_AMD", False),
            start_timeout_s=reader.seconds("GATEWAY_START_TIMEOUT_S", cls.start_timeout_s, 1, 120),
            max_message_rate=reader.integer("GATEWAY_MAX_MESSAGE_RATE", cls.max_message_rate, 60, 100000),
            max_message_burst=reader.integer("GATEWAY_MAX_MESSAGE_BURST", cls.max_message_burst, 100, 1000000),
            model_connect_budget_s=reader.seconds("GATEWAY_MODEL_CONNECT_BUDGET_S", cls.model_connect_budget_s, 0, 60),
            hold_after_s=reader.seconds("GATEWAY_HOLD_AFTER_S", cls.hold_after_s, 0, 30),
            fallback_say=env.get("GATEWAY_FALLBACK_SAY", cls.fallback_say).strip(),
            fallback_dial=reader.dial("GATEWAY_FALLBACK_DIAL"),
            tool_timeout_s=reader.seconds("GATEWAY_TOOL_TIMEOUT_S", cls.tool_timeout_s, 0, 3600),
            drain_timeout_s=reader.seconds("GATEWAY_DRAIN_TIMEOUT_S", cls.drain_timeout_s, 0, 86400),
            drain_redirect_url=reader.url("GATEWAY_DRAIN_REDIRECT_URL"),
            instance_url=reader.instance_url("GATEWAY_INSTANCE_URL"),
            data_dir=Path(reader.optional("GATEWAY_DATA_DIR") or cls.data_dir),
            database_url=reader.database_url("GATEWAY_DATABASE_URL"),
            store_calls=reader.boolean("GATEWAY_STORE_CALLS", cls.store_calls),
            redact_digits=reader.boolean("GATEWAY_REDACT_DIGITS", cls.redact_digits),
            record=reader.boolean("GATEWAY_RECORD", cls.record),
            recording_retention_days=reader.integer("GATEWAY_RECORDING_RETENTION_DAYS",
                                                    cls.recording_retention_days, 0, 36500),
        )
        if problems:
            raise SettingsError(problems)
        fields["audio_mode"] = AudioMode(fields["audio_mode"])
        return cls(**fields)


#: Something Twilio can <Dial>: an E.164 number or a SIP URI.
_DIAL = r"\+[1-9]\d{6,14}|sips?:[^\s@]+@[^\s]+"


class _Reader:
    """Reads and checks raw values, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env, self.problems = env, problems

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problems.append(f"{name}: required")
            return ""
        return value

    def choice(self, name: str, allowed, default: str) -> str:
        value = self.optional(name)
        if value is None:
            return default
        if name == "GATEWAY_LOG_LEVEL":
            value = value.upper()
        if value not in allowed:
            self.problems.append(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name}: must be a whole number, got {value!r}")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}: must be between {low} and {high}, got {number}")
            return default
        return number

    def seconds(self, name: str, default: float, low: float, high: float) -> float:
        """A duration in seconds: a whole or decimal number (``7.5``) from ``low`` to ``high``."""
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            self.problems.append(f"{name}: must be a number of seconds, got {value!r}")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}: must be between {low:g} and {high:g}, got {value}")
            return default
        return number

    def dial(self, name: str) -> str | None:
        """An E.164 number or a sip: URI, or None."""
        value = self.optional(name)
        if value is not None and not re.fullmatch(_DIAL, value):
            self.problems.append(f"{name}: expected +E164 or sip:user@host, got {value!r}")
            return None
        return value

    def url(self, name: str) -> str | None:
        """An absolute http(s) URL, or None."""
        value = self.optional(name)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                self.problems.append(f"{name}: must be an absolute http(s) URL, got {value!r}")
                return None
        return value

    def instance_url(self, name: str) -> str | None:
        """An ``http://host:port`` with an explicit port and no path beyond ``/``, or None."""
        value = self.url(name)
        if value is not None:
            parts = urlsplit(value)
            try:
                port = parts.port
            except ValueError:
                port = None
            if port is None or parts.path.strip("/") or parts.query:
                self.problems.append(f"{name}: must be http(s)://host:port with a port and no path, got {value!r}")
                return None
        return value

    def database_url(self, name: str) -> str | None:
        """A ``postgresql://`` (or ``postgres://``) URL, or None."""
        value = self.optional(name)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("postgresql", "postgres") or not (parts.netloc or parts.query):
                self.problems.append(f"{name}: must be a postgresql://user:password@host/dbname URL, "
                                     f"got a {parts.scheme or 'schemeless'} URL")
                return None
        return value

    def targets(self, name: str) -> tuple[tuple[str, str], ...]:
        """``name=+15551234567,desk=sip:desk@pbx.example.com``."""
        value = self.optional(name)
        if value is None:
            return ()
        targets = []
        for entry in value.split(","):
            label, sep, target = (part.strip() for part in entry.partition("="))
            if not sep or not label or not re.fullmatch(_DIAL, target):
                self.problems.append(
                    f"{name}: expected name=+E164 or name=sip:user@host entries, got {entry.strip()!r}"
                )
                continue
            targets.append((label, target))
        return tuple(targets)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}: must be true or false, got {value!r}")
        return default


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` settings of a ``.env`` file, read as python-dotenv reads it (the one
    ``.env`` parser of the gateway and its commands): ``#`` comment lines and inline `` #``
    comments after unquoted values, ``export`` prefixes, single and double quotes (escapes such
    as ``\\n`` and ``\\"`` in double quotes only) and ``${VAR}`` expansion outside single quotes.
    See https://github.com/theskumar/python-dotenv#file-format. A bare ``KEY`` line with no
    ``=`` sets nothing.
    """
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path, encoding="utf-8").items() if value is not None}
