"""Health endpoints. Thin: the checks live in :mod:`clinic.health`."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from clinic.health import run_checks


@never_cache
@require_GET
async def live(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests; says nothing of its dependencies."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    """Every dependency answered; 503 with each check's status and latency otherwise."""
    results = await run_checks()
    healthy = all(result.ok for result in results)
    body = {
        "status": "ok" if healthy else "fail",
        "checks": {result.name: result.as_dict() for result in results},
    }
    return JsonResponse(body, status=200 if healthy else 503)
