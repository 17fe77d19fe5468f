"""The call's named timers and its keypad, on the event loop (no task per timer).

A call keeps a few timers at once, each by name ("silence", "dtmf", "max") so that re-arming
one replaces it and ending the call cancels them all. Key presses are gathered into one entry
because callers type a date or a number key by key: the entry ends at ``#`` or after a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CallTimers:
    """Timers by name; setting a name again replaces its timer."""

    def __init__(self) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def set(self, name: str, delay: float, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback(*args)`` after ``delay`` seconds, in place of any timer ``name``."""
        self.cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback, *args)

    def cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        """Stop every timer (the call is over). Left in place: cancelling twice is harmless."""
        for timer in self._timers.values():
            timer.cancel()


class Keypad:
    """Key presses gathered into one entry, handed to ``on_entry`` at ``#`` or after a gap."""

    def __init__(
        self, timers: CallTimers, *, gap_seconds: float, on_entry: Callable[[str], None]
    ) -> None:
        self._timers = timers
        self._gap_seconds = gap_seconds
        self._on_entry = on_entry
        self._digits = ""

    def press(self, digit: str) -> None:
        if digit == "#":
            self.flush()
            return
        self._digits += digit
        self._timers.set("dtmf", self._gap_seconds, self.flush)

    def flush(self) -> None:
        """End the entry now; nothing is handed on if no key was pressed."""
        self._timers.cancel("dtmf")
        digits, self._digits = self._digits, ""
        if digits:
            self._on_entry(digits)
