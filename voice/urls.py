"""Twilio's webhooks. Configure the phone number with PUBLIC_BASE_URL + these paths (POST):
``/voice/answer`` for incoming calls and ``/voice/status`` as the status callback;
``/voice/dial-status`` is named in the answer TwiML itself."""

from __future__ import annotations

from django.urls import path

from voice import views

app_name = "voice"

urlpatterns = [
    path("answer", views.answer, name="answer"),
    path("status", views.status, name="status"),
    path("dial-status", views.dial_status, name="dial-status"),
]
