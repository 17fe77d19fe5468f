"""Health endpoints. Thin: the checks live in :mod:`clinic.health`."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from clinic.health import CRITICAL_CHECKS, run_checks


@never_cache
@require_GET
async def live(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests; says nothing of its dependencies."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    """Each check's status and latency; 503 only when this process cannot take calls.

    "ok": everything answered; "degraded": a shared dependency failed (200: see
    :mod:`clinic.health` for why); "fail": the process itself is not ready (503).
    """
    results = await run_checks()
    ready = all(result.ok for result in results if result.name in CRITICAL_CHECKS)
    degraded = not all(result.ok for result in results)
    body = {
        "status": "fail" if not ready else "degraded" if degraded else "ok",
        "checks": {result.name: result.as_dict() for result in results},
    }
    return JsonResponse(body, status=200 if ready else 503)
