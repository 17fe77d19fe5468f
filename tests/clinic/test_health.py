"""Health endpoints check real dependencies and report a failure as 503 per check."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, override_settings

from tests.conftest import ThrowawayRedis

pytestmark = pytest.mark.django_db(transaction=True)


async def test_live_answers_without_touching_dependencies() -> None:
    response = await AsyncClient().get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_the_configured_dependencies() -> None:
    response = await AsyncClient().get("/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {"database", "channel_layer"} <= set(body["checks"])
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert check["latency_ms"] >= 0


def redis_settings(url: str) -> dict[str, object]:
    return {
        "REDIS_URL": url,
        "CHANNEL_LAYERS": {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url]},
            }
        },
        "CELERY_TASK_ALWAYS_EAGER": False,
        "CELERY_BROKER_URL": url,
    }


async def test_a_stopped_redis_degrades_readiness_but_the_process_stays_in_rotation(
    throwaway_redis: ThrowawayRedis,
) -> None:
    with override_settings(**redis_settings(throwaway_redis.url)):
        healthy = await AsyncClient().get("/health/ready")
        assert healthy.status_code == 200, healthy.json()
        assert set(healthy.json()["checks"]) == {
            "database",
            "channel_layer",
            "redis",
            "celery_broker",
        }

        throwaway_redis.stop()
        failing = await AsyncClient().get("/health/ready")

    # Calls do not need Redis (the audio path never touches it): stay in rotation, say so.
    assert failing.status_code == 200
    assert failing.json()["status"] == "degraded"
    checks = failing.json()["checks"]
    assert checks["database"]["status"] == "ok"
    for name in ("redis", "channel_layer", "celery_broker"):
        assert checks[name]["status"] == "fail", name
        assert checks[name]["latency_ms"] >= 0
        assert checks[name]["detail"]


async def test_metrics_are_exposed_for_prometheus() -> None:
    await AsyncClient().get("/health/live")
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert "django_db_execute_total" in text or "django_db_new_connections_total" in text
