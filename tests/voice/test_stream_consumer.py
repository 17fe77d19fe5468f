"""The media-stream consumer end to end: the real session, conversation and providers."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate
from intake import services
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from tests.voice.twilio_stream import SILENCE, TwilioStream
from voice.tokens import stream_token_issue

pytestmark = pytest.mark.django_db(transaction=True)


def deepgram_settings(fake: FakeDeepgram) -> dict[str, object]:
    return {
        "STT_PROVIDER": "deepgram",
        "TTS_PROVIDER": "deepgram",
        "DEEPGRAM_API_KEY": fake.api_key,
        "DEEPGRAM_BASE_URL": fake.base_url,
        "PUBLIC_BASE_URL": "https://clinic.example.org",
        "CALL_SILENCE_SECONDS": 30,
    }


@sync_to_async
def new_call(caller: str = "+16175550142") -> tuple[Call, str]:
    load_demo_calendar()
    slots_generate(horizon_days=14)
    call = services.call_start(call_sid="CA" + "a" * 32, caller_number=caller)
    return call, stream_token_issue(call)


async def speak(stream: TwilioStream, fake: FakeDeepgram, transcript: str) -> None:
    fake.say(transcript)
    await stream.media(tone_mulaw(600) + SILENCE * 40)


async def test_greeting_then_a_caller_turn_over_deepgram() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, token = await new_call()
            stream = TwilioStream(call.call_sid, token)
            connected, _ = await stream.connect()
            assert connected
            await stream.start()
            frames, mark = await stream.play_until_mark()
            assert frames > 50 and mark
            await speak(stream, fake, "I'd like to make an appointment")
            frames, mark = await stream.play_until_mark()
            assert frames > 10
            await stream.stop()
            await stream.communicator.disconnect()
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED
    texts = [t async for t in call.turns.order_by("sequence").values_list("speaker", "text")]
    assert texts[1] == ("caller", "I'd like to make an appointment")


async def play_scenario_over_deepgram(slug: str, fake: FakeDeepgram) -> Call:
    """Each caller line is a burst of 'speech' the fake transcribes as that line."""
    from intake import scenario as scenarios

    scenario = scenarios.load(slug)
    await sync_to_async(scenarios.prepare)(scenario)
    call, token = await new_call(scenario.caller_number)
    stream = TwilioStream(call.call_sid, token)
    await stream.connect()
    await stream.start()
    await stream.play_until_mark()
    for line in scenario.lines:
        if line.hangup:
            break
        if line.press:
            for key in line.press:
                await stream.dtmf(key)
        else:
            await speak(stream, fake, line.caller)
        _, mark = await stream.play_until_mark()
        if mark is None:
            break
    await stream.stop()
    await stream.communicator.disconnect()
    problems = await sync_to_async(scenarios.check)(scenario, call)
    assert problems == []
    return await Call.objects.aget(pk=call.pk)


async def test_a_new_patient_books_over_deepgram_stt_and_tts() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call = await play_scenario_over_deepgram("new_patient_booked", fake)
    assert call.outcome == Call.Outcome.BOOKED
    timed = [t async for t in call.turns.filter(speaker="agent", tts_first_byte_ms__isnull=False)]
    assert len(timed) >= 15
    caller = [t async for t in call.turns.filter(speaker="caller")]
    assert all(t.stt_final_ms is not None for t in caller)
    assert any(t.response_latency_ms is not None for t in timed)


async def open_stream(
    fake: FakeDeepgram, caller: str = "+16175550142"
) -> tuple[Call, TwilioStream]:
    call, token = await new_call(caller)
    stream = TwilioStream(call.call_sid, token)
    connected, _ = await stream.connect()
    assert connected
    await stream.start()
    return call, stream


async def next_event(stream: TwilioStream, event: str) -> dict[str, object] | None:
    while True:
        message = await stream.receive()
        if message is None or message["event"] == event:
            return message


async def test_barge_in_clears_playback_and_marks_the_turn_interrupted() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, stream = await open_stream(fake)
            assert await next_event(stream, "media")  # the greeting has started playing
            # The caller talks over it (the mark is not echoed: playback is still going on).
            await speak(stream, fake, "I want to book an appointment")
            clear = await next_event(stream, "clear")
            assert clear is not None and clear["streamSid"] == stream.stream_sid
            _, mark = await stream.play_until_mark()  # the answer to what they said
            assert mark
            await stream.stop()
            await stream.communicator.disconnect()
    greeting = await call.turns.filter(speaker="agent").order_by("sequence").afirst()
    assert greeting is not None and greeting.interrupted
    caller = await call.turns.filter(speaker="caller").afirst()
    assert caller is not None and caller.text == "I want to book an appointment"
    assert fake.speak_disconnects >= 1 or len(fake.speak_requests) >= 2


async def test_a_backchannel_does_not_interrupt_the_agent() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, stream = await open_stream(fake)
            assert await next_event(stream, "media")
            await speak(stream, fake, "mm-hm")
            message = await next_event(stream, "mark")  # playback ran to its end
            assert message is not None
            assert not [m for m in stream.received if m["event"] == "clear"]
            await stream.stop()
            await stream.communicator.disconnect()
    assert not await call.turns.filter(interrupted=True).aexists()
    assert not await call.turns.filter(speaker="caller").aexists()


async def test_pressing_zero_transfers_to_the_front_desk() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(
            **deepgram_settings(fake),
            CLINIC_OPENING_HOURS="mon-sun 00:00-23:59",
            FRONT_DESK_NUMBER="+16175550000",
        ):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            await stream.dtmf("0")
            await stream.play_until_mark()  # "One moment, I'm transferring you"
            assert await stream.receive() is None  # the server closed the stream: <Dial> runs
            await stream.communicator.disconnect()  # Twilio's side of the close
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.TRANSFERRED


async def test_a_dropped_stt_socket_is_recovered_without_losing_the_turn() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            fake.drop_after(0)  # the next utterance kills the socket instead of being answered
            await speak(stream, fake, "I'd like to make an appointment")
            _, mark = await stream.play_until_mark()
            assert mark
            await stream.stop()
            await stream.communicator.disconnect()
    assert len(fake.listen_sessions) >= 2
    caller = [t async for t in call.turns.filter(speaker="caller")]
    assert [t.text for t in caller] == ["I'd like to make an appointment"]


async def test_a_failing_tts_provider_hands_over_to_the_offline_voice() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            fake.fail_speak(count=10, mode="status")
            call, stream = await open_stream(fake)
            frames, mark = await stream.play_until_mark()
            assert frames > 50 and mark  # the greeting was spoken by espeak-ng
            await speak(stream, fake, "I'd like to make an appointment")
            frames, mark = await stream.play_until_mark()
            assert frames > 10 and mark
            await stream.stop()
            await stream.communicator.disconnect()
    assert len(fake.speak_requests) >= 1


async def test_a_stream_without_a_valid_token_is_closed() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, _ = await new_call()
            stream = TwilioStream(call.call_sid, "not-a-token")
            await stream.connect()
            await stream.start()
            output = await stream.communicator.receive_output(timeout=5)
            assert output == {"type": "websocket.close", "code": 4401}


async def test_a_stream_without_a_twilio_signature_is_refused() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, token = await new_call()
            stream = TwilioStream(call.call_sid, token, headers=[])
            connected, code = await stream.connect()
            assert not connected
            assert code == 4403


async def test_malformed_and_out_of_order_messages_are_dropped_and_counted() -> None:
    from voice import metrics

    def dropped(reason: str) -> float:
        value: float = metrics.MALFORMED.labels(reason=reason)._value.get()
        return value

    before = {r: dropped(r) for r in ("not_json", "unknown_event", "before_start", "bad_base64")}
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, token = await new_call()
            stream = TwilioStream(call.call_sid, token)
            await stream.connect()
            await stream.mark("early")  # before start: out of order
            await stream.communicator.send_to(text_data="{not json")
            await stream.send({"event": "surprise", "streamSid": stream.stream_sid})
            await stream.start()
            await stream.send(
                {
                    "event": "media",
                    "streamSid": stream.stream_sid,
                    "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "%%%"},
                }
            )
            frames, mark = await stream.play_until_mark()  # the call goes on regardless
            assert frames > 50 and mark
            await speak(stream, fake, "I'd like to make an appointment")
            _, mark = await stream.play_until_mark()
            assert mark
            await stream.stop()
            await stream.communicator.disconnect()
    for reason in before:
        assert dropped(reason) == before[reason] + 1, reason
    assert await call.turns.filter(speaker="caller").acount() == 1


async def test_hanging_up_mid_sentence_finishes_the_call_with_a_follow_up() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            fake.say("I'd like to")
            await stream.media(tone_mulaw(400))  # speech, and then the line goes dead
            await stream.communicator.disconnect()  # socket lost, no stop message
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED
    assert call.ended_at is not None
    reasons = [f.reason async for f in call.followups.all()]
    assert reasons == ["call_dropped"]


async def test_silence_after_a_question_gets_a_reprompt() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**{**deepgram_settings(fake), "CALL_SILENCE_SECONDS": 0.3}):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            frames, mark = await stream.play_until_mark()  # nothing said: "Are you still there?"
            assert frames > 10 and mark
            await stream.stop()
            await stream.communicator.disconnect()
    texts = [t async for t in call.turns.filter(speaker="agent").values_list("text", flat=True)]
    assert texts[1].startswith("Are you still there?")


async def test_a_new_patient_books_over_deepgram_and_openai() -> None:
    from tests.fakes.openai_server import FakeOpenAI

    async with FakeDeepgram() as fake, FakeOpenAI() as openai:
        with override_settings(
            **deepgram_settings(fake),
            NLU_PROVIDER="openai",
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=openai.base_url,
            NLU_TIMEOUT_SECONDS=5,
        ):
            call = await play_scenario_over_deepgram("new_patient_booked", fake)
    assert call.outcome == Call.Outcome.BOOKED
    caller_turns = await call.turns.filter(speaker="caller").acount()
    assert len(openai.requests) == caller_turns  # every turn was understood by the model
