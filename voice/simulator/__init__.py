"""A caller that behaves like Twilio: the call simulator, end-to-end tests and the load bench.

:class:`TwilioCaller` plays one scenario file (:mod:`intake.scenario`) as a phone call. It does
what Twilio does for an inbound call on ``<Connect><Stream>``:

1. POSTs the ``/voice/answer`` webhook, form-encoded and signed (``X-Twilio-Signature``
   over ``PUBLIC_BASE_URL + "/voice/answer"``, the URL the server validates against), and
   reads the TwiML for the stream URL and its ``<Parameter>`` values.
2. Opens the stream's WebSocket with the handshake signed over the URL given in the TwiML,
   sends ``connected`` and ``start``, then caller audio as ``media`` every 20 ms for the
   whole call (mu-law silence when the caller is quiet), on a monotonic schedule so that
   the pace does not drift however long the call.
3. Plays the agent's audio on a playback clock: a ``mark`` is echoed only once the audio
   queued before it would have finished playing, and ``clear`` drops the queue and echoes
   every pending mark at once. Turn-taking depends on this: the server starts its silence
   timer and decides what is a barge-in from the marks, so echoing them early or late
   would test a different conversation from the one a caller has.

The caller speaks each scenario line once the agent has finished its prompt (audio played,
marks echoed, a short pause), like a polite person; a ``barge_in`` line talks over the
prompt instead. The text is synthesised by espeak-ng (or, for load tests, a plain tone that
any voice-activity detector takes as one utterance).

The same caller runs over the network (``websockets`` and ``urllib``, against a running
Daphne) and in-process (Django's ``AsyncClient`` and Channels' ``WebsocketCommunicator``),
through the small :class:`Transport` protocol. ``speed`` plays the call faster than real
time for tests: caller audio and agent playback run ``speed`` times faster; the server's
own timers (silence, max duration) still run on its wall clock. At high speeds a speech
engine that streams slower than ``speed`` times real time leaves gaps in playback, which the
caller takes for the end of a prompt (as a person would hear a pause), so keep barge-in and
latency figures that matter to ``speed=1``.

Agent text is not in the media stream, so the transcript printed at the end is read from
the database (:class:`intake.models.Turn`), next to the latencies measured here.


The package: :mod:`.wire` (SIDs, signatures, TwiML, Twilio's messages), :mod:`.playback`
(the playback buffer and the send schedule), :mod:`.voices` (caller audio), :mod:`.transports`
(network and in-process), :mod:`.stream` (pace, ear and marks of one call), :mod:`.caller`
(the scenario's turn-taking), :mod:`.results`, :mod:`.database` and :mod:`.report` (what
happened, read back and printed). Everything importers need is importable from here.
"""

from voice.simulator.caller import (
    BARGE_IN_AFTER_SECONDS,
    DTMF_GAP_SECONDS,
    KNOWN_EVENTS,
    TwilioCaller,
)
from voice.simulator.playback import FRAME_SECONDS, FrameSchedule, Playback
from voice.simulator.report import acheck, check, format_transcript
from voice.simulator.results import AgentSpeech, CallResult, LineResult, TranscriptTurn
from voice.simulator.stream import MAX_AGENT_TURN_SECONDS, CallLine
from voice.simulator.transports import (
    InProcessTransport,
    NetworkTransport,
    StreamSocket,
    Transport,
)
from voice.simulator.voices import (
    CALLER_VOICES,
    SILENCE_FRAME,
    VOICED_DB,
    VOICES,
    CallerVoice,
    Voice,
    caller_frames,
    is_voiced,
    tone_frames,
    trim_silence,
    voice_spec,
)
from voice.simulator.wire import (
    ANSWER_PATH,
    SimulatorError,
    StreamInstruction,
    StreamMessages,
    new_sid,
    parse_twiml,
    twilio_signature,
)

__all__ = [
    "ANSWER_PATH",
    "BARGE_IN_AFTER_SECONDS",
    "CALLER_VOICES",
    "DTMF_GAP_SECONDS",
    "FRAME_SECONDS",
    "KNOWN_EVENTS",
    "MAX_AGENT_TURN_SECONDS",
    "SILENCE_FRAME",
    "VOICED_DB",
    "VOICES",
    "AgentSpeech",
    "CallLine",
    "CallerVoice",
    "CallResult",
    "FrameSchedule",
    "InProcessTransport",
    "LineResult",
    "NetworkTransport",
    "Playback",
    "SimulatorError",
    "StreamInstruction",
    "StreamMessages",
    "StreamSocket",
    "TranscriptTurn",
    "Transport",
    "TwilioCaller",
    "Voice",
    "acheck",
    "caller_frames",
    "check",
    "format_transcript",
    "is_voiced",
    "new_sid",
    "parse_twiml",
    "tone_frames",
    "trim_silence",
    "voice_spec",
    "twilio_signature",
]
