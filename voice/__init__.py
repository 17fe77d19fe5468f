"""The phone line: Twilio webhooks, the media-stream consumer, audio, STT and TTS."""
