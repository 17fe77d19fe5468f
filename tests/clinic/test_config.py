"""Settings are validated at start-up; a wrong one is refused in one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinic.config import DEV_FIELD_ENCRYPTION_KEY, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]

GOOD_KEY = "x3m9yQyq3zBnq6m0bqQp5f3bS2ZlGk2mT0v3J3b7k2A="
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "s" * 64,
    "ALLOWED_HOSTS": "clinic.example.org",
    "FIELD_ENCRYPTION_KEYS": GOOD_KEY,
    "BLIND_INDEX_KEY": "b" * 40,
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "PUBLIC_BASE_URL": "https://clinic.example.org",
    "EMAIL_URL": "smtp://mailer:secret@smtp.example.org:587",
}


def refused_variable(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(environ)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(caught.value.variable + ":")
    return caught.value.variable


def test_no_configuration_gives_the_embedded_defaults() -> None:
    config = load_config({})
    assert config.app_env == "development"
    assert config.debug is True
    assert config.database["ENGINE"] == "django_prometheus.db.backends.sqlite3"
    assert config.redis_url is None
    assert (config.stt_provider, config.tts_provider, config.nlu_provider) == (
        "whisper",
        "espeak",
        "rules",
    )
    assert config.field_encryption_keys == [DEV_FIELD_ENCRYPTION_KEY]


def test_a_complete_production_configuration_is_accepted() -> None:
    config = load_config(PRODUCTION)
    assert config.production and not config.debug
    assert config.log_json is True


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"DEBUG": "true"}, "DEBUG"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS"),
        ({"FIELD_ENCRYPTION_KEYS": None}, "FIELD_ENCRYPTION_KEYS"),
        ({"FIELD_ENCRYPTION_KEYS": DEV_FIELD_ENCRYPTION_KEY}, "FIELD_ENCRYPTION_KEYS"),
        ({"BLIND_INDEX_KEY": None}, "BLIND_INDEX_KEY"),
        ({"TWILIO_AUTH_TOKEN": None}, "TWILIO_AUTH_TOKEN"),
        ({"STT_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"TTS_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"NLU_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"PUBLIC_BASE_URL": "http://clinic.example.org"}, "PUBLIC_BASE_URL"),
        ({"EMAIL_URL": None}, "EMAIL_URL"),
    ],
)
def test_production_refuses_unsafe_settings(change: dict[str, str | None], variable: str) -> None:
    environ = {**PRODUCTION, **{k: v for k, v in change.items() if v is not None}}
    for key, value in change.items():
        if value is None:
            environ.pop(key)
    assert refused_variable(environ) == variable


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DATABASE_URL": "mysql://db/clinic"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://user@db:notaport/clinic"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL"),
        ({"SLOT_HORIZON_DAYS": "sixty"}, "SLOT_HORIZON_DAYS"),
        ({"SLOT_HORIZON_DAYS": "0"}, "SLOT_HORIZON_DAYS"),
        ({"CALL_SILENCE_SECONDS": "soon"}, "CALL_SILENCE_SECONDS"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"STT_PROVIDER": "vosk"}, "STT_PROVIDER"),
        ({"CLINIC_TIME_ZONE": "Mars/Olympus"}, "CLINIC_TIME_ZONE"),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-key"}, "FIELD_ENCRYPTION_KEYS"),
        ({"FRONT_DESK_NUMBER": "555-1234"}, "FRONT_DESK_NUMBER"),
        ({"PUBLIC_BASE_URL": "clinic.example.org"}, "PUBLIC_BASE_URL"),
        ({"CLINIC_TIMEZONE": "UTC"}, "CLINIC_TIMEZONE"),
        ({"CLINIC_OPENING_HOURS": "weekdays 9 to 5"}, "CLINIC_OPENING_HOURS"),
        ({"CLINIC_OPENING_HOURS": "mon-fri 17:00-08:00"}, "CLINIC_OPENING_HOURS"),
    ],
)
def test_malformed_values_are_refused_in_any_environment(
    environ: dict[str, str], variable: str
) -> None:
    assert refused_variable(environ) == variable


def _run(code: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(extra_env)
    env["DJANGO_SETTINGS_MODULE"] = "clinic.settings"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_manage_py_stops_with_one_line_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({**PRODUCTION, "SECRET_KEY": "short"})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: SECRET_KEY: set a random value of at least 50 characters"
    ]


BACKENDS = """
import json, django
from django.conf import settings
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "broker": settings.CELERY_BROKER_URL,
}))
"""


def test_embedded_backends_without_configuration() -> None:
    result = _run(BACKENDS, {})
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    assert chosen == {
        "db": "django_prometheus.db.backends.sqlite3",
        "layer": "channels.layers.InMemoryChannelLayer",
        "eager": True,
        "broker": "memory://",
    }


def test_database_url_and_redis_url_switch_to_postgresql_and_redis() -> None:
    result = _run(
        BACKENDS,
        {
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
            "REDIS_URL": "redis://127.0.0.1:6379/2",
        },
    )
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    assert chosen == {
        "db": "django_prometheus.db.backends.postgresql",
        "layer": "channels_redis.core.RedisChannelLayer",
        "eager": False,
        "broker": "redis://127.0.0.1:6379/2",
    }


LOG_LINES = """
import django
django.setup()
import structlog
from clinic.logs import get_logger
structlog.contextvars.bind_contextvars(call_id="call-42")
get_logger("tests").info("caller_identified", phase="identify", note="dob 03/12/1984")
import logging
logging.getLogger("django.request").warning("Lookup for +1 (555) 123-4567 failed")
"""


def test_production_logs_are_json_lines_with_ids_bound_and_phi_masked() -> None:
    result = _run(LOG_LINES, PRODUCTION)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.strip().splitlines()]
    ours = next(line for line in lines if line["event"] == "caller_identified")
    assert ours["call_id"] == "call-42"
    assert ours["level"] == "info"
    assert ours["phase"] == "identify"
    assert "1984" not in ours["note"]
    foreign = next(line for line in lines if line["logger"] == "django.request")
    assert "555" not in foreign["event"]
    assert foreign["call_id"] == "call-42"
    assert "timestamp" in foreign


def test_development_logs_are_readable_console_lines() -> None:
    result = _run(LOG_LINES, {})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "caller_identified" in line)
    assert not line.startswith("{")
    assert "call_id=call-42" in line
    assert "1984" not in line
