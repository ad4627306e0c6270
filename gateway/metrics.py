"""The gateway's Prometheus metrics (``GET /metrics``), from the calls' records and typed events.

One ``Metrics`` per gateway, in a registry of its own (two gateways in one process, as tests
run them, do not mix). Labels stay bounded: direction, end reason, tool name (the agents' own
tools), outcome, close code; never a call SID. A call's figures are added when it ends, from its
``CallRecord`` (``call_ended``): nothing is done per frame. The gauges are read when scraped.
The names are the figures docs/ and the demo talk about:

| metric | what |
| --- | --- |
| ``gateway_active_calls`` | calls in progress |
| ``gateway_draining`` | 1 while the gateway drains (SIGTERM) |
| ``gateway_calls_total{direction,end_reason}`` | calls that started, by how they ended |
| ``gateway_call_duration_seconds`` | from the stream's ``start`` to the end |
| ``gateway_time_to_first_audio_seconds`` | from ``start`` to the agent's first audio sent |
| ``gateway_barge_in_clear_seconds`` | from the model's ``speech_started`` to Twilio's ``clear`` |
| ``gateway_model_connect_seconds`` | connecting the model, first time and reconnects |
| ``gateway_model_reconnects_total`` | model sessions replaced after a failure |
| ``gateway_tool_calls_total{tool,outcome}`` | tool runs: ok, error or timeout |
| ``gateway_stream_errors_total{close_code}`` | streams the gateway closed with an error code |
| ``gateway_frames_dropped_total{direction}`` | ``in``: caller frames dropped from a full pre-connect buffer; ``out``: agent frames dropped after a barge-in |
| ``gateway_event_loop_lag_seconds`` | how late the event loop runs a timer (``LoopLag``) |

With ``gateway serve --workers N`` each worker keeps its own; ``GET /metrics`` on any of them
gathers the others' (``/internal/v1/metrics``) and reports the sums (``merge``): the counts,
the histograms' buckets and the active calls add up; ``gateway_draining`` is the largest.
A worker that does not answer is left out, and ``gateway_workers_answering`` says how many did.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.audio import AudioMode
from gateway.bridge.agents import tool_outcome
from gateway.bridge.ending import CLOSE_NORMAL, close_code
from gateway.bridge.events import BargeIn, CallEnded, CallStarted, FirstAudio, ModelConnected, ModelReconnected, ToolReturned
from gateway.bridge.record import CallRecord

__all__ = ["CONTENT_TYPE", "LoopLag", "Metrics", "gathered_registry", "merge"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
INF = float("inf")


class Metrics:
    def __init__(self, audio_mode: AudioMode, active: Callable[[], int], draining: Callable[[], bool],
                 records_waiting: Callable[[], int] = lambda: 0) -> None:
        self.registry = r = CollectorRegistry()
        self._frame_bytes = 20 * audio_mode.model_bytes_per_ms  # 20 ms of the model's audio
        Gauge("gateway_active_calls", "Calls in progress.", registry=r).set_function(active)
        Gauge("gateway_draining", "1 while the gateway drains (no new calls).", registry=r).set_function(
            lambda: 1.0 if draining() else 0.0)
        Gauge("gateway_records_waiting", "Finished calls' records not yet written to the store.",
              registry=r).set_function(records_waiting)
        self.calls = Counter("gateway_calls", "Calls that started, by direction and end reason.",
                             ["direction", "end_reason"], registry=r)
        self.duration = Histogram("gateway_call_duration_seconds", "Call length, from the stream's start.",
                                  buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, INF), registry=r)
        self.first_audio = Histogram(
            "gateway_time_to_first_audio_seconds", "From the stream's start to the agent's first audio sent.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, INF), registry=r)
        self.clear = Histogram(
            "gateway_barge_in_clear_seconds", "From the model's speech_started to Twilio's clear sent.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, INF), registry=r)
        self.connect = Histogram("gateway_model_connect_seconds", "Connecting the model (retries included).",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, INF), registry=r)
        self.reconnects = Counter("gateway_model_reconnects", "Model sessions replaced after a failure.",
                                  registry=r)
        self.tools = Counter("gateway_tool_calls", "Tool runs, by tool and outcome.", ["tool", "outcome"],
                             registry=r)
        self.stream_errors = Counter("gateway_stream_errors", "Media streams closed with an error code.",
                                     ["close_code"], registry=r)
        self.dropped = Counter("gateway_frames_dropped", "Audio frames dropped, by direction.", ["direction"],
                               registry=r)
        self.loop_lag = Histogram("gateway_event_loop_lag_seconds", "How late the event loop runs a timer.",
                                  buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, INF),
                                  registry=r)

    def call_ended(self, record: CallRecord) -> None:
        """A stream is over (a call, or a stream refused before its start): its figures."""
        code = close_code(record.end_reason)
        if code != CLOSE_NORMAL:
            self.stream_errors.labels(str(code)).inc()
        started = record.first(CallStarted)
        if started is None:
            return  # refused before start: no call
        ended = record.last(CallEnded)
        reason = record.end_reason.name.lower() if record.end_reason is not None else "unknown"
        self.calls.labels(started.direction, reason).inc()
        if ended is not None:
            self.duration.observe(max(0.0, ended.t - started.t))
        for event in record.timeline:
            kind = type(event)
            if kind is FirstAudio:
                self.first_audio.observe(event.seconds)
            elif kind is BargeIn and event.clear_ms is not None:
                self.clear.observe(event.clear_ms / 1000)
            elif kind is ModelConnected:
                self.connect.observe(event.seconds)
            elif kind is ModelReconnected:
                self.connect.observe(event.seconds)
                self.reconnects.inc()
            elif kind is ToolReturned:
                self.tools.labels(event.tool, tool_outcome(event.output)).inc()
        if record.buffered_dropped:
            self.dropped.labels("in").inc(record.buffered_dropped)
        if record.dropped_audio_bytes:
            self.dropped.labels("out").inc(math.ceil(record.dropped_audio_bytes / self._frame_bytes))

    def text(self) -> bytes:
        return generate_latest(self.registry)


#: Gauges whose sum across workers means nothing: the largest is reported.
_LARGEST = frozenset({"gateway_draining"})


def merge(texts: list[bytes]) -> bytes:
    """Several workers' metrics (Prometheus text format) as one (``merged_families``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged_families(texts)))
    return generate_latest(registry)


def merged_families(texts: list[bytes]) -> list[Metric]:
    """Several workers' metrics as metric families: every sample with the same name and labels
    summed (the largest for ``_LARGEST``, the earliest for a ``_created`` time), plus
    ``gateway_workers_answering``."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            into = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in into:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(into[key], sample.value)
                elif family.name in _LARGEST:
                    into[key] = max(into[key], sample.value)
                else:
                    into[key] += sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    answering = Metric("gateway_workers_answering", "Workers whose metrics are in this report.", "gauge")
    answering.add_sample("gateway_workers_answering", {}, float(len(texts)))
    return [*families.values(), answering]


def gathered_registry(metrics: Metrics, siblings: Callable[[], list[bytes]]) -> CollectorRegistry:
    """For ``GATEWAY_METRICS_PORT``'s server thread: ``metrics`` and, when scraped,
    ``siblings()`` (the other workers' texts, fetched in that thread), merged."""

    class _Gathered:
        def collect(self) -> list[Metric]:
            return merged_families([metrics.text(), *siblings()])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Gathered())
    return registry


class _Families:
    """A collector of metric families already made."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class LoopLag:
    """Measures how late the event loop runs a timer: every ``every_s``, the sleep's overshoot.
    A late loop delays every call's audio (a blocking call, a long collection, a busy core)."""

    def __init__(self, metrics: Metrics, every_s: float = 0.5) -> None:
        self.metrics = metrics
        self.every_s = every_s

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.every_s)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - before - self.every_s))
