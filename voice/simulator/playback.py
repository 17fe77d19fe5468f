"""The caller's two clocks: Twilio's playback buffer for agent audio, and the caller's send pace."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voice.audio import FRAME_MS, TWILIO_RATE

FRAME_SECONDS = FRAME_MS / 1000


@dataclass
class _PendingMark:
    name: str
    due: float


class Playback:
    """Twilio's outbound audio queue for one call, on a clock (times are ``time.monotonic``).

    Audio plays in arrival order from when it arrives or when earlier audio ends, at
    ``speed`` times real time. A mark is due when the audio queued before it has played
    (at once if nothing is queued). ``clear`` drops the queue and returns every pending mark,
    which Twilio then echoes immediately.

    It also keeps the bench's measure of smoothness: within one utterance (the media between
    two marks), frame ``i`` must arrive by the first frame's arrival plus the play time of the
    ``i`` frames before it, give or take ``late_tolerance_s``; a frame later than that would
    have left the caller hearing a gap.
    """

    def __init__(self, *, speed: float = 1.0, late_tolerance_s: float = 0.03) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.late_tolerance_s = late_tolerance_s
        self.ends_at = 0.0
        self.pending: deque[_PendingMark] = deque()
        self.frames = 0
        self.late_frames = 0
        self.max_lateness_s = 0.0
        self._segment_start: float | None = None
        self._segment_audio_s = 0.0

    def play_time(self, nbytes: int) -> float:
        """Seconds that ``nbytes`` of mu-law take to play at this speed."""
        return nbytes / TWILIO_RATE / self.speed

    def idle(self, now: float) -> bool:
        """Nothing is playing and no mark is waiting to be echoed."""
        return self.ends_at <= now and not self.pending

    def media(self, nbytes: int, now: float) -> bool:
        """Queue ``nbytes`` of agent audio that arrived at ``now``; True when it was late."""
        if self._segment_start is None:
            self._segment_start = now
            self._segment_audio_s = 0.0
        deadline = self._segment_start + self._segment_audio_s + self.late_tolerance_s
        self._segment_audio_s += self.play_time(nbytes)
        self.ends_at = max(self.ends_at, now) + self.play_time(nbytes)
        self.frames += 1
        late = now > deadline
        if late:
            self.late_frames += 1
            self.max_lateness_s = max(self.max_lateness_s, now - deadline)
        return late

    def mark(self, name: str, now: float) -> list[str]:
        """A mark arrived: return it if it is due at once (nothing queued before it)."""
        self._segment_start = None
        if self.ends_at <= now and not self.pending:
            return [name]
        self.pending.append(_PendingMark(name, max(self.ends_at, now)))
        return []

    def due(self, now: float) -> list[str]:
        """Marks whose audio has finished playing by ``now``, in order; they leave the queue."""
        names = []
        while self.pending and self.pending[0].due <= now:
            names.append(self.pending.popleft().name)
        return names

    def next_due_at(self) -> float | None:
        return self.pending[0].due if self.pending else None

    def clear(self, now: float) -> list[str]:
        """Drop queued audio; return every pending mark (Twilio echoes them all at once)."""
        names = [mark.name for mark in self.pending]
        self.pending.clear()
        self.ends_at = min(self.ends_at, now)
        self._segment_start = None
        return names


class FrameSchedule:
    """When caller frame ``k`` is due: ``start + k * 20 ms / speed``, never ``now + 20 ms``.

    Sleeping 20 ms after each send drifts by the send time and the scheduler's lateness on
    every frame (seconds over a call); computing each due time from the start keeps the
    average rate exact, and a late frame is followed by on-time ones instead of shifting
    all of them.
    """

    def __init__(self, start: float, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.interval = FRAME_SECONDS / speed

    def due(self, index: int) -> float:
        return self.start + index * self.interval

    def delay(self, index: int, now: float) -> float:
        """Seconds to wait before sending frame ``index`` (0 when it is already due)."""
        return max(0.0, self.due(index) - now)
