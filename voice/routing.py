"""WebSocket routes: Twilio's media stream."""

from __future__ import annotations

from django.urls import path

from voice.consumers import MediaStreamConsumer

websocket_urlpatterns = [
    path("voice/stream/", MediaStreamConsumer.as_asgi()),
]
