"""ASGI entry point served by Daphne: Django for HTTP, the voice routes for WebSockets."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:  # a wrong setting: one line, not a traceback
    sys.stderr.write(f"configuration error: {exc}\n")
    raise SystemExit(2) from None

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from voice.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Twilio's media streams are not browser sessions: no AuthMiddlewareStack here;
        # the consumer authenticates each stream by signature and per-call token.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
