"""``Playback``: what the caller has heard of the agent, sans-I/O.

Twilio facts this relies on (https://www.twilio.com/docs/voice/media-streams/websocket-messages):

- Media we send is queued and played in order at real time; sending is not hearing.
- A ``mark`` we send is echoed back once all audio queued before it has played, and at once
  if nothing is queued.
- ``clear`` drops all queued audio and echoes every pending mark at once. An echo therefore
  means "played *or cleared*", and echoes of marks sent before a clear must not count as
  played.

So the agent's audio goes out in 20 ms frames with a mark at least every ``mark_interval_ms``
and at the end of each item. Each mark is named ``g<generation>:<item>:<content index>:<offset>``
(offset in bytes of 8 kHz mu-law, 8 per ms) and remembered until it echoes. A barge-in
(``interrupt``) sends ``clear``, starts a new generation and forgets every pending mark, so
their echoes, which Twilio sends at once, are recognised as stale. Each echo reports
exactly the audio played since the previous echo of that item.

Between echoes, ``heard`` interpolates. Twilio plays at real time, so ``t`` seconds after the
echo at offset ``x`` the caller is at ``x + t``, except that no message plays before it was
sent: a model streaming at real time can deliver a chunk after Twilio's queue ran dry, and
playback waits for it. That is capped at the audio sent, and at one mark interval (the next
echo is due by then; if it is late, playback is stalled). This is how
the truncation sent to the model matches what the caller heard even mid-interval, and even in
the first 100 ms of a reply, before any echo.
"""

from __future__ import annotations

import collections
import dataclasses

from gateway.audio import FRAME_BYTES, ULAW_BYTES_PER_MS, Framer, OutboundTranscoder
from gateway.bridge.actions import SendClear, SendMark, SendMedia

Action = SendMedia | SendMark | SendClear
_BYTES_PER_S = 1000 * ULAW_BYTES_PER_MS


@dataclasses.dataclass(frozen=True, slots=True)
class Played:
    """A mark echo: ``ms`` more of the item played, ``heard_ms`` of it in all."""

    item_id: str
    content_index: int
    ms: float
    heard_ms: float


@dataclasses.dataclass(frozen=True, slots=True)
class Heard:
    """The caller's position in the agent's audio at some instant."""

    item_id: str
    content_index: int
    ms: float


@dataclasses.dataclass(slots=True)
class _Item:
    item_id: str
    content_index: int
    sent: int = 0  # bytes sent to Twilio
    marked: int = 0  # offset of the last mark placed
    acked: int = 0  # offset of the last mark echoed (played)
    anchor: tuple[int, float] | None = None  # (offset, time) at which playback was seen there
    ended: bool = False
    #: (end offset, time sent) of each media message past the last echo: audio cannot play
    #: before it was sent (``Playback.heard``).
    sends: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.item_id, self.content_index)


class Playback:
    """Outbound audio of one call: framing, marks, echoes, barge-in, what was heard."""

    #: Interrupted item ids remembered, to drop their late audio.
    _REMEMBER_INTERRUPTED = 64

    def __init__(self, transcoder: OutboundTranscoder, mark_interval_ms: int = 100) -> None:
        self.transcoder = transcoder
        self.mark_interval_ms = mark_interval_ms
        self._interval = mark_interval_ms * ULAW_BYTES_PER_MS
        self.generation = 0
        self._framer = Framer(FRAME_BYTES)
        self._items: dict[tuple[str, int], _Item] = {}  # this generation's items, in order
        self._current: _Item | None = None  # the item audio is being sent for
        self._pending: dict[str, tuple[_Item, int, bool]] = {}  # mark -> (item, offset, final)
        self._interrupted: collections.deque[str] = collections.deque(maxlen=self._REMEMBER_INTERRUPTED)
        self.dropped_bytes = 0  # late model audio of interrupted items, dropped
        self.stale_echoes = 0  # echoes of marks sent before a clear
        #: What the caller had heard when a barge-in cleared playback (``barge_in``): the
        #: model's truncation, which follows, is told this (``PlaybackTracker``), not what they
        #: would have heard by the time it asks. None once told, or when no barge-in is pending.
        self.cut: Heard | None = None

    # --- The model speaks ------------------------------------------------------------------

    def audio(self, item_id: str, content_index: int, data: bytes, now: float) -> list[Action]:
        """A chunk of the model's audio (model format): frames and marks to send."""
        if item_id in self._interrupted:
            self.dropped_bytes += len(data)
            return []
        actions: list[Action] = []
        item = self._current
        if item is None or item.key != (item_id, content_index):
            if item is not None and not item.ended:
                actions += self._end(item, now)
            item = self._items.get((item_id, content_index))
            if item is None:
                item = self._items[(item_id, content_index)] = _Item(item_id, content_index)
            self._current = item
        self._send(item, self._framer.push_whole(self.transcoder.convert(data)), actions, now)
        return actions

    def audio_end(self, item_id: str, content_index: int, now: float) -> list[Action]:
        """The model finished this item's audio: flush what is held back, mark the end."""
        item = self._current
        if item is None or item.key != (item_id, content_index) or item.ended:
            return []
        return self._end(item, now)

    def _end(self, item: _Item, now: float) -> list[Action]:
        actions: list[Action] = []
        self._send(item, self._framer.push_whole(self.transcoder.flush()) + self._framer.flush(), actions, now)
        item.ended = True
        last = self._name(item)
        if item.sent == item.marked and last in self._pending:
            self._pending[last] = (item, item.sent, True)  # the last interval mark ends it too
        else:
            actions.append(self._mark(item, final=True))
        return actions

    def _send(self, item: _Item, audio: bytes, actions: list[Action], now: float) -> None:
        """``audio`` (whole frames, but for an item's last bytes) in as few ``media`` messages as
        the marks allow: one message up to each mark, a mark after the first frame boundary
        ``mark_interval_ms`` past the last one (where one-frame messages would put it). Twilio
        plays a payload of any size in order; a message a frame costs 5 times the JSON, base64
        and WebSocket work for the same audio."""
        if not audio:
            return
        if item.anchor is None and item.sent == 0 and not self._pending:
            item.anchor = (0, now)  # nothing queued ahead: it starts playing now
        start, size = 0, len(audio)
        while start < size:
            due = self._interval - (item.sent - item.marked)  # bytes until the mark is due
            cut = start + max(FRAME_BYTES, -(-due // FRAME_BYTES) * FRAME_BYTES)
            if cut >= size:  # no mark inside: the rest in one message
                actions.append(SendMedia(audio[start:] if start else audio))
                item.sent += size - start
                item.sends.append((item.sent, now))
                if item.sent - item.marked >= self._interval:
                    actions.append(self._mark(item, final=False))
                return
            actions.append(SendMedia(audio[start:cut]))
            item.sent += cut - start
            item.sends.append((item.sent, now))
            actions.append(self._mark(item, final=False))
            start = cut

    def _name(self, item: _Item) -> str:
        return f"g{self.generation}:{item.item_id}:{item.content_index}:{item.sent}"

    def _mark(self, item: _Item, final: bool) -> SendMark:
        name = self._name(item)
        self._pending[name] = (item, item.sent, final)
        item.marked = item.sent
        return SendMark(name)

    # --- Twilio echoes a mark -------------------------------------------------------------------

    def mark_echoed(self, name: str, now: float) -> Played | None:
        """``None`` for stale echoes (cleared, not played) and for marks we never sent."""
        entry = self._pending.pop(name, None)
        if entry is None:
            self.stale_echoes += 1
            return None
        item, offset, final = entry
        played = offset - item.acked
        item.acked = offset
        item.anchor = (offset, now)
        sends = item.sends
        while sends and sends[0][0] <= offset:  # played: every mark closes a message
            del sends[0]
        if final:
            # The next item queued behind this one starts playing now.
            following = self._following(item)
            if following is not None:
                if following.anchor is None:
                    following.anchor = (0, now)
                del self._items[item.key]  # fully played and no longer the latest: forget it
        return Played(item.item_id, item.content_index, played / ULAW_BYTES_PER_MS, offset / ULAW_BYTES_PER_MS)

    def _following(self, item: _Item) -> _Item | None:
        items = list(self._items.values())
        index = items.index(item)
        return items[index + 1] if index + 1 < len(items) else None

    # --- What the caller heard ----------------------------------------------------------------

    def heard(self, now: float) -> Heard | None:
        """The item playing (or last played) and how much of it the caller has heard by ``now``."""
        playing = None
        for item in self._items.values():
            if item.anchor is not None:
                playing = item  # the latest item that has started playing
        if playing is None:
            return None
        offset, since = playing.anchor
        # Twilio plays at real time from the anchor on, but a message cannot play before it was
        # sent: if the agent's audio came late, playback ran dry and waited for it.
        position, t = offset, since
        for end, sent_at in playing.sends:
            if end <= position:
                continue
            begin = t if t >= sent_at else sent_at
            if now <= begin:
                break
            done = begin + (end - position) / _BYTES_PER_S
            if now < done:
                position += (now - begin) * _BYTES_PER_S
                break
            position, t = end, done
        ahead = min(position - offset, self._interval)
        return Heard(playing.item_id, playing.content_index, (offset + ahead) / ULAW_BYTES_PER_MS)

    def sent_ms(self, item_id: str, content_index: int) -> float:
        """How much of an item (of this generation) has been sent to Twilio."""
        item = self._items.get((item_id, content_index))
        return item.sent / ULAW_BYTES_PER_MS if item is not None else 0.0

    @property
    def queued_ms(self) -> float:
        """Agent audio sent but not yet confirmed played (by echoes) in this generation."""
        return sum(i.sent - i.acked for i in self._items.values()) / ULAW_BYTES_PER_MS

    @property
    def speaking(self) -> bool:
        """True while sent audio awaits its echoes: the caller is (about to be) hearing the agent."""
        return bool(self._pending)

    @property
    def interruptible(self) -> bool:
        """Something would be cut by a barge-in: audio the caller has not heard yet, or an
        item the model is still streaming."""
        return any(
            item.item_id not in self._interrupted and (not item.ended or item.acked < item.sent)
            for item in self._items.values()
        )

    # --- Barge-in ----------------------------------------------------------------------------------

    def barge_in(self, now: float) -> list[Action]:
        """The caller started talking over the agent: ``interrupt``, and keep what they had
        heard at this instant, the one the ``clear`` goes out at, as ``cut``."""
        self.cut = self.heard(now)
        return self.interrupt()

    def drop(self, item_id: str) -> None:
        """Drop ``item_id``'s audio from now on, like an interrupted item's, without a
        ``clear`` (playback was already cleared)."""
        if item_id not in self._interrupted:
            self._interrupted.append(item_id)

    def interrupt(self, item_id: str | None = None) -> list[Action]:
        """The caller talked over the agent (or a guardrail tripped): stop playback now.

        ``clear`` empties Twilio's queue; a new generation makes the pending marks' echoes stale;
        the interrupted items' remaining audio, still arriving from the model, will be dropped.
        """
        for item in self._items.values():
            if item.item_id not in self._interrupted and (not item.ended or item.acked < item.sent):
                self._interrupted.append(item.item_id)
        if item_id is not None and item_id not in self._interrupted:
            self._interrupted.append(item_id)
        self.generation += 1
        self._pending.clear()
        self._items.clear()
        self._current = None
        self._framer.reset()
        self.transcoder.reset()
        return [SendClear()]
