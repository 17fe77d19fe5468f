"""Prometheus metrics of the phone line, exposed at /metrics with django-prometheus's.

Labels are bounded enums (outcome, reason, engine); never a caller's number or words.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The hosted providers' circuit breakers (provider_circuit_state, 0 closed / 1 half-open /
# 2 open, and provider_circuit_short_circuits_total) are defined where intake can use them
# too; imported here so that /metrics lists them from start-up.
from clinic.circuit import CIRCUIT_STATE as CIRCUIT_STATE
from clinic.circuit import SHORT_CIRCUITS as SHORT_CIRCUITS

# Latencies a caller feels are sub-second; the buckets resolve 25 ms steps there.
_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

STT_FINAL_LATENCY = Histogram(
    "voice_stt_final_latency_seconds",
    "Speech recogniser delay to a final transcript.",
    buckets=_BUCKETS,
)
UNDERSTANDING_TIME = Histogram(
    "voice_understanding_seconds",
    "Time to understand one caller turn (rules or language model).",
    buckets=_BUCKETS,
)
TTS_FIRST_BYTE = Histogram(
    "voice_tts_first_byte_seconds",
    "From a synthesis request to its first audio.",
    buckets=_BUCKETS,
)
RESPONSE_LATENCY = Histogram(
    "voice_response_latency_seconds",
    "From the end of the caller's speech to the first agent audio sent.",
    buckets=_BUCKETS,
)
BARGE_IN_REACTION = Histogram(
    "voice_barge_in_reaction_seconds",
    "From caller speech over the agent to the clear message that stops playback.",
    buckets=_BUCKETS,
)
CALLS = Counter("voice_calls_total", "Finished calls by outcome.", ["outcome"])
MALFORMED = Counter(
    "voice_malformed_messages_total",
    "Twilio media-stream messages dropped as malformed or out of order.",
    ["reason"],
)
ACTIVE_CALLS = Gauge("voice_active_calls", "Calls with an open media stream in this process.")
DEFERRED_WRITES = Gauge(
    "voice_deferred_writes",
    "Database writes of calls waiting for the database to come back (this process).",
)
LIVE_EVENTS_DROPPED = Counter(
    "voice_live_events_dropped_total",
    "Live-call events not published to the channel layer (unreachable or slow).",
)
STT_AUDIO_DROPPED = Counter(
    "voice_stt_audio_dropped_seconds_total",
    "Caller audio dropped because a stream sent it faster than real time (per-stream budget).",
    ["engine"],
)
OVER_BUDGET = Counter(
    "voice_stream_messages_over_budget_total",
    "Media-stream messages dropped unread: the stream sent more than real time allows "
    "(kind: message = any message, control = marks, keypresses and other non-media).",
    ["kind"],
)
