"""The loopback fakes ``python -m bench.calls`` runs in child processes (``--serve ...``): a
Deepgram that scripts each connection separately, and the bare relay that is the bench's floor.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bench.calls_env import DEEPGRAM_KEY, SPOKEN, fixed_latency_s
from tests.fakes.deepgram_server import FakeDeepgram
from voice import twilio_wire, twiml
from voice.simulator import SILENCE_FRAME, tone_frames


class PerCallDeepgram(FakeDeepgram):
    """The loopback Deepgram with the scenario's script per connection, not per server.

    ``FakeDeepgram`` keeps one queue of transcripts for every connection; with concurrent
    calls, whichever call finishes an utterance first would take another call's words. Each
    ``/v1/listen`` connection is handled in one task, so the queue is kept per task: every
    call hears the scenario from its first line. (Better as an option of the fake itself.)
    """

    def __init__(self, *, lines: Sequence[str], **kwargs: Any) -> None:
        self._lines = list(lines)
        self._scripts: weakref.WeakKeyDictionary[asyncio.Task[Any], deque[str]] = (
            weakref.WeakKeyDictionary()
        )
        super().__init__(**kwargs)

    @property
    def script(self) -> deque[str]:
        task = asyncio.current_task()
        if task is None:
            return deque()
        if task not in self._scripts:
            self._scripts[task] = deque(self._lines)
        return self._scripts[task]

    @script.setter
    def script(self, value: Any) -> None:
        """The base class's single script is ignored: each connection gets its own."""


class Relay:
    """The reference: Twilio's message pattern answered with no processing behind it."""

    def __init__(self, *, greeting_ms: float, reply_ms: Sequence[float], delay_s: float) -> None:
        self.greeting_frames = int(greeting_ms // 20)
        self.reply_frames = [int(ms // 20) for ms in reply_ms]
        self.delay_s = delay_s
        self.silence = base64.b64encode(SILENCE_FRAME).decode("ascii")
        self.frame = tone_frames("relay")[0]
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/voice/answer", self.answer)
        app.router.add_get("/voice/stream/", self.stream)
        return app

    async def answer(self, request: web.Request) -> web.Response:
        document = twiml.answer_with_stream(
            stream_url=f"ws://127.0.0.1:{self.port}/voice/stream/", token="relay"
        )
        return web.Response(text=document, content_type="text/xml")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stream_sid = ""
        answers = 0
        in_speech = False
        pending: set[asyncio.Task[None]] = set()

        async def say(frames: int, name: str, delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            for _ in range(frames):
                await ws.send_str(twilio_wire.media_message(stream_sid, self.frame))
            await ws.send_str(twilio_wire.mark_message(stream_sid, name))

        def later(frames: int, name: str, delay_s: float) -> None:
            task = asyncio.create_task(say(frames, name, delay_s))
            pending.add(task)
            task.add_done_callback(pending.discard)

        async for message in ws:
            data = json.loads(message.data)
            event = data.get("event")
            if event == "start":
                stream_sid = data["start"]["streamSid"]
                later(self.greeting_frames, "greeting", 0.0)
            elif event == "media":
                # Speech or not by comparing text: the relay does not even decode the audio.
                voiced = data["media"]["payload"] != self.silence
                if voiced:
                    in_speech = True
                elif in_speech:
                    in_speech = False
                    frames = self.reply_frames[min(answers, len(self.reply_frames) - 1)]
                    answers += 1
                    later(frames, f"u{answers}", self.delay_s)
            elif event == "stop":
                break
        for task in list(pending):
            task.cancel()
        await ws.close()
        return ws


async def serve(kind: str, options: argparse.Namespace) -> None:
    """Run one fake until SIGTERM; print ``ready <port>`` once listening."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "fake-deepgram":
        async with PerCallDeepgram(
            lines=SPOKEN,
            api_key=DEEPGRAM_KEY,
            latency_s=options.stt_latency,
            speak_first_byte_s=0.0,
            speak_ms_per_character=options.speak_ms_per_character,
        ) as fake:
            print(f"ready {fake.port}", flush=True)
            await stop.wait()
        return
    relay = Relay(
        greeting_ms=options.greeting_ms,
        reply_ms=[float(ms) for ms in options.reply_ms.split(",")],
        delay_s=fixed_latency_s(options),
    )
    runner = web.AppRunner(relay.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    relay.port = int(runner.addresses[0][1])
    print(f"ready {relay.port}", flush=True)
    await stop.wait()
    await runner.cleanup()


# --- processes ---------------------------------------------------------------------------------
