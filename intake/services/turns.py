"""Writes of a call's turns: each utterance stored (encrypted) as it happens, then its timings.

Turns are written while the caller waits, and an event may be replayed after a restart, so a
turn with an explicit sequence is written once whatever the number of attempts.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from clinic.logs import get_logger
from intake.models import Call, Turn

log = get_logger(__name__)


def turn_record(
    *,
    call: Call,
    speaker: str,
    text: str,
    sequence: int | None = None,
    stt_final_ms: float | None = None,
    understanding_ms: float | None = None,
    tts_first_byte_ms: float | None = None,
    response_latency_ms: float | None = None,
    interrupted: bool = False,
) -> Turn:
    """Write one utterance of a call as it happens (encrypted), with its timings.

    Without ``sequence`` the turn goes after the call's last one (the call row is locked
    meanwhile so that two writers cannot take the same number). With ``sequence`` the write
    is idempotent: replaying an event after a restart returns the turn already stored.
    """
    if speaker not in Turn.Speaker.values:
        raise ValueError(f"unknown speaker: {speaker!r}")
    timings = {
        "stt_final_ms": stt_final_ms,
        "understanding_ms": understanding_ms,
        "tts_first_byte_ms": tts_first_byte_ms,
        "response_latency_ms": response_latency_ms,
    }
    with transaction.atomic():
        # Serialise writers of this call's turns (SQLite's IMMEDIATE transactions already do).
        Call.objects.select_for_update().only("pk").get(pk=call.pk)
        if sequence is None:
            last = call.turns.aggregate(last=Max("sequence"))["last"]
            sequence = 1 if last is None else last + 1
        else:
            existing = call.turns.filter(sequence=sequence).first()
            if existing is not None:
                return existing
        turn = Turn.objects.create(
            call=call,
            sequence=sequence,
            speaker=speaker,
            text=text,
            interrupted=interrupted,
            **{name: _ms(value) for name, value in timings.items()},
        )
    log.info(
        "turn_recorded",
        call_id=call.pk,
        sequence=sequence,
        speaker=speaker,
        text_length=len(text),
        **{name: _ms(value) for name, value in timings.items() if value is not None},
    )
    return turn


def turn_update_timings(
    *,
    turn: Turn,
    tts_first_byte_ms: float | None = None,
    response_latency_ms: float | None = None,
    interrupted: bool | None = None,
) -> Turn:
    """Add what is known only after an agent turn is written: playback timing, barge-in."""
    fields: list[str] = []
    if tts_first_byte_ms is not None:
        turn.tts_first_byte_ms = _ms(tts_first_byte_ms)
        fields.append("tts_first_byte_ms")
    if response_latency_ms is not None:
        turn.response_latency_ms = _ms(response_latency_ms)
        fields.append("response_latency_ms")
    if interrupted is not None:
        turn.interrupted = interrupted
        fields.append("interrupted")
    if fields:
        turn.save(update_fields=fields)
    return turn


def _ms(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))
