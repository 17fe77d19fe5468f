"""WebSocket routes. The media-stream consumer is added here by the voice issue."""

from __future__ import annotations

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
