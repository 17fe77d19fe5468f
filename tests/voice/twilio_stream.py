"""A minimal Twilio side of the media stream for consumer tests (in process).

The full caller (speech synthesis, pacing, playback clock) is voice.simulator.TwilioCaller;
this one sends exactly the messages a test scripts, to exercise the consumer's edges.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from channels.testing import WebsocketCommunicator
from django.conf import settings
from twilio.request_validator import RequestValidator

from clinic.asgi import application
from voice.signatures import STREAM_PATH, public_websocket_url

SILENCE = b"\xff" * 160


def signed_headers() -> list[tuple[bytes, bytes]]:
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    signature = validator.compute_signature(public_websocket_url(STREAM_PATH), {})
    return [(b"x-twilio-signature", signature.encode())]


class TwilioStream:
    def __init__(
        self, call_sid: str, token: str, *, headers: list[tuple[bytes, bytes]] | None = None
    ):
        self.call_sid = call_sid
        self.token = token
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.sequence = 0
        self.chunk = 0
        self.communicator = WebsocketCommunicator(
            application, STREAM_PATH, headers=signed_headers() if headers is None else headers
        )
        self.received: list[dict[str, Any]] = []

    async def connect(self) -> tuple[bool, int | None]:
        connected: tuple[bool, int | None] = await self.communicator.connect(timeout=10)
        return connected

    async def send(self, message: dict[str, Any]) -> None:
        self.sequence += 1
        message.setdefault("sequenceNumber", str(self.sequence))
        await self.communicator.send_to(text_data=json.dumps(message))

    async def start(self) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(
            {
                "event": "start",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {"token": self.token},
                },
            }
        )

    async def media(self, audio: bytes) -> None:
        for offset in range(0, len(audio), 160):
            frame = audio[offset : offset + 160].ljust(160, b"\xff")
            self.chunk += 1
            await self.send(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.chunk),
                        "timestamp": str(self.chunk * 20),
                        "payload": base64.b64encode(frame).decode(),
                    },
                }
            )

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def stop(self) -> None:
        await self.send(
            {
                "event": "stop",
                "streamSid": self.stream_sid,
                "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid},
            }
        )

    async def receive(self, limit_s: float = 10) -> dict[str, Any] | None:
        """The next message from the server, or None once it has closed the socket."""
        output = await self.communicator.receive_output(timeout=limit_s)
        if output["type"] == "websocket.close":
            return None
        message: dict[str, Any] = json.loads(output["text"])
        self.received.append(message)
        return message

    async def play_until_mark(self, limit_s: float = 20) -> tuple[int, str | None]:
        """Receive agent audio up to its mark; echo the mark (played instantly). Frames, mark."""
        frames = 0
        while True:
            message = await self.receive(limit_s=limit_s)
            if message is None:
                return frames, None
            if message["event"] == "media":
                frames += 1
            elif message["event"] == "mark":
                await self.mark(message["mark"]["name"])
                return frames, message["mark"]["name"]
