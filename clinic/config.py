"""Read and validate the process environment once, at start-up.

Every setting a clinic can change arrives here as an environment variable, is parsed with
django-environ and checked. A wrong value raises :class:`ConfigError`, whose message is a
single line that starts with the variable's name, so an operator sees exactly what to fix
instead of a traceback from deep inside Django. ``manage.py`` and ``clinic.asgi`` turn that
error into one line on stderr and a non-zero exit.

The embedded defaults (no variables at all) give a working development install: SQLite,
the in-memory channel layer, eager Celery and the offline speech engines.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from clinic.hours import parse_opening_hours

BASE_DIR = Path(__file__).resolve().parent.parent

# Development-only secrets. Production refuses to start while any of them is in use.
DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"  # noqa: S105
# Fernet keys are url-safe base64 of 32 bytes.
DEV_FIELD_ENCRYPTION_KEY = base64.urlsafe_b64encode(b"dev-only-field-encryption-key-32").decode()
DEV_BLIND_INDEX_KEY = "dev-only-blind-index-key-not-for-production"
# Lets the call simulator sign webhooks in development; refused in production.
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"  # noqa: S105

DEFAULT_CARRIERS = (
    "Aetna",
    "Blue Cross Blue Shield",
    "Cigna",
    "UnitedHealthcare",
    "Humana",
    "Medicare",
    "Medicaid",
)
APP_ENVS = ("development", "test", "production")
STT_PROVIDERS = ("whisper", "pocketsphinx", "deepgram")
WHISPER_MODELS = ("base", "tiny.en")
TTS_PROVIDERS = ("espeak", "deepgram")
NLU_PROVIDERS = ("rules", "openai")

# Variables with these prefixes belong to this project; an unknown one is a typo.
OWN_PREFIXES = (
    "CLINIC_",
    "STT_",
    "TTS_",
    "NLU_",
    "CALL_",
    "SLOT_",
    "REPROMPT_",
    "CIRCUIT_",
    "DRAIN_",
    "OUTBOX_",
    "RED_FLAG_",
)
KNOWN_VARIABLES = frozenset(
    {
        "APP_ENV",
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "FIELD_ENCRYPTION_KEYS",
        "BLIND_INDEX_KEY",
        "CLINIC_NAME",
        "CLINIC_TIME_ZONE",
        "CLINIC_OPENING_HOURS",
        "CLINIC_ACCEPTED_CARRIERS",
        "SLOT_HORIZON_DAYS",
        "SLOT_HOLD_SECONDS",
        "TRANSCRIPT_RETENTION_DAYS",
        "REPROMPT_LIMIT",
        "RED_FLAG_MIN_CONFIDENCE",
        "CALL_SILENCE_SECONDS",
        "CALL_MAX_SECONDS",
        "CALL_DATABASE_RETRY_SECONDS",
        "CALL_HEARTBEAT_SECONDS",
        "CALL_STALE_SECONDS",
        "CALL_SWEEP_SECONDS",
        "DRAIN_GRACE_SECONDS",
        "STT_PROVIDER",
        "STT_WHISPER_MODEL",
        "STT_WHISPER_THREADS",
        "STT_WHISPER_WORKERS",
        "STT_MODEL_DIR",
        "TTS_PROVIDER",
        "NLU_PROVIDER",
        "NLU_TIMEOUT_SECONDS",
        "CIRCUIT_FAILURE_THRESHOLD",
        "CIRCUIT_COOLDOWN_SECONDS",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_API_BASE_URL",
        "PUBLIC_BASE_URL",
        "FRONT_DESK_NUMBER",
        "DEEPGRAM_API_KEY",
        "DEEPGRAM_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "EMAIL_URL",
        "DEFAULT_FROM_EMAIL",
        "OUTBOX_PUBLISH_TIMEOUT_SECONDS",
        "OUTBOX_RELAY_SECONDS",
    }
)


class ConfigError(ImproperlyConfigured):
    """A setting is missing or wrong. The message is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


@dataclass(frozen=True)
class Config:
    """Typed, validated settings. Built only by :func:`load_config`."""

    app_env: str
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict[str, Any]
    redis_url: str | None
    log_level: str
    log_json: bool
    field_encryption_keys: list[str]
    blind_index_key: str
    clinic_name: str
    clinic_time_zone: str
    opening_hours: str
    accepted_carriers: list[str]
    slot_horizon_days: int
    slot_hold_seconds: int
    transcript_retention_days: int
    reprompt_limit: int
    call_silence_seconds: float
    call_max_seconds: int
    call_database_retry_seconds: float
    stt_provider: str
    tts_provider: str
    nlu_provider: str
    nlu_timeout_seconds: float
    circuit_failure_threshold: int
    circuit_cooldown_seconds: float
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_api_base_url: str
    public_base_url: str
    front_desk_number: str
    deepgram_api_key: str
    deepgram_base_url: str
    openai_api_key: str
    openai_base_url: str
    openai_model: str
    email: dict[str, Any] = field(default_factory=dict)
    default_from_email: str = ""
    warnings: list[str] = field(default_factory=list)
    # The embedded recogniser (STT_PROVIDER=whisper): see voice/stt/whisper_decode.py.
    stt_whisper_model: str = "base"
    stt_whisper_threads: int = 1
    stt_whisper_workers: int = 1
    stt_model_dir: str = ""
    # The server process: drain on SIGTERM, heartbeats of live calls, the sweep of dead ones.
    drain_grace_seconds: float = 20.0
    call_heartbeat_seconds: float = 10.0
    call_stale_seconds: float = 30.0
    call_sweep_seconds: float = 10.0
    # Celery work in the transactional outbox (clinic.outbox): how long a publish may wait for
    # the broker, and how often the relay sends what is left.
    outbox_publish_timeout_seconds: float = 1.0
    outbox_relay_seconds: float = 15.0
    # A red flag heard below this recogniser confidence is confirmed with the caller first.
    red_flag_min_confidence: float = 0.8

    @property
    def production(self) -> bool:
        return self.app_env == "production"


class _Reader:
    """Wraps django-environ so that every parse failure names its variable."""

    def __init__(self, environ_map: Mapping[str, str]) -> None:
        self.env = environ.Env()
        # django-environ reads ``self.ENVIRON``; an instance attribute lets tests pass a dict.
        self.env.ENVIRON = dict(environ_map)
        self.raw = self.env.ENVIRON

    def _parse(self, name: str, parser: Any, default: Any) -> Any:
        try:
            return parser(name, default=default)
        except ConfigError:
            raise
        except (ValueError, TypeError, ImproperlyConfigured, KeyError) as exc:
            raise ConfigError(name, f"cannot parse {self.raw.get(name, '')!r}") from exc

    def text(self, name: str, default: str = "") -> str:
        return str(self._parse(name, self.env.str, default)).strip()

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(name, f"expected true or false, got {value!r}")

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.raw.get(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        return number

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self.raw.get(name)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(name, f"expected a number, got {value!r}") from None
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        return number

    def items(self, name: str, default: list[str] | None = None) -> list[str]:
        """A comma-separated list."""
        value = self.raw.get(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def url(self, name: str, schemes: tuple[str, ...], default: str = "") -> str:
        value = self.text(name, default)
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(
                name, f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        try:
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise ConfigError(name, "the URL has an invalid port") from None
        return value.rstrip("/")


def _database(reader: _Reader) -> dict[str, Any]:
    default = f"sqlite:///{BASE_DIR / 'var' / 'clinic.sqlite3'}"
    url = reader.text("DATABASE_URL", default)
    scheme = urlsplit(url).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ConfigError("DATABASE_URL", "expected sqlite:///path or postgres://user@host/name")
    try:
        config: dict[str, Any] = environ.Env.db_url_config(url)
        urlsplit(url).port  # noqa: B018 - a bad port raises here
    except (ValueError, KeyError, ImproperlyConfigured) as exc:
        raise ConfigError("DATABASE_URL", "cannot parse the URL") from exc
    if scheme == "sqlite":
        if not config.get("NAME"):
            raise ConfigError("DATABASE_URL", "the SQLite URL names no file")
        config["ENGINE"] = "django_prometheus.db.backends.sqlite3"
        # Tests use a file (not Django's shared in-memory database) so that concurrent
        # bookings from threads and processes meet real SQLite locking; one file per process.
        config["TEST"] = {
            "NAME": str(Path(tempfile.gettempdir()) / f"clinic-test-{os.getpid()}.sqlite3")
        }
        # IMMEDIATE transactions take the write lock up front, so two bookings racing for one
        # slot queue behind each other instead of failing with "database is locked".
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:
        if not config.get("NAME"):
            raise ConfigError("DATABASE_URL", "the PostgreSQL URL names no database")
        config["ENGINE"] = "django_prometheus.db.backends.postgresql"
        config.setdefault("CONN_MAX_AGE", 60)
        config["CONN_HEALTH_CHECKS"] = True
        # libpq's defaults wait on an unreachable server for as long as the OS does (minutes):
        # a call must learn within seconds that the database is gone, so that it can retry a
        # little and then hand the caller to a person (voice.session).
        config["OPTIONS"] = {
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 5000,  # ms of unacknowledged data before the socket is dead
            **config.get("OPTIONS", {}),
        }
    return config


def _fernet_keys(reader: _Reader) -> list[str]:
    keys = reader.items("FIELD_ENCRYPTION_KEYS")
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                "FIELD_ENCRYPTION_KEYS",
                f"key {position} is not a Fernet key (url-safe base64 of 32 bytes)",
            )
    return keys


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _probability(reader: _Reader, name: str, default: float) -> float:
    """A recogniser confidence: a number from 0 to 1."""
    value = reader.number(name, default)
    if value > 1.0:
        raise ConfigError(name, f"must be between 0 and 1, got {value}")
    return value


def load_config(environ_map: Mapping[str, str]) -> Config:
    """Build the validated :class:`Config` from an environment mapping."""
    reader = _Reader(environ_map)
    warnings: list[str] = []

    for name in sorted(reader.raw):
        if name.startswith(OWN_PREFIXES) and name not in KNOWN_VARIABLES:
            raise ConfigError(name, "unknown setting (misspelled?)")

    app_env = reader.choice("APP_ENV", APP_ENVS, "development")
    production = app_env == "production"
    debug = reader.flag("DEBUG", default=not production)

    secret_key = reader.text("SECRET_KEY", DEV_SECRET_KEY)
    allowed_hosts = reader.items(
        "ALLOWED_HOSTS", [] if production else ["localhost", "127.0.0.1", "[::1]", "testserver"]
    )
    keys = _fernet_keys(reader)
    blind_index_key = reader.text("BLIND_INDEX_KEY")

    stt = reader.choice("STT_PROVIDER", STT_PROVIDERS, "whisper")
    tts = reader.choice("TTS_PROVIDER", TTS_PROVIDERS, "espeak")
    nlu = reader.choice("NLU_PROVIDER", NLU_PROVIDERS, "rules")
    deepgram_key = reader.text("DEEPGRAM_API_KEY")
    openai_key = reader.text("OPENAI_API_KEY")
    twilio_sid = reader.text("TWILIO_ACCOUNT_SID")
    twilio_token = reader.text("TWILIO_AUTH_TOKEN")
    public_base_url = reader.url("PUBLIC_BASE_URL", ("https", "http"), "http://localhost:8000")
    front_desk = reader.text("FRONT_DESK_NUMBER")
    if front_desk and not _E164.match(front_desk):
        raise ConfigError("FRONT_DESK_NUMBER", "expected an E.164 number such as +15551234567")
    if twilio_sid and not re.fullmatch(r"AC[0-9a-fA-F]{32}", twilio_sid):
        raise ConfigError("TWILIO_ACCOUNT_SID", "expected AC followed by 32 hex digits")

    if "deepgram" in (stt, tts) and not deepgram_key:
        which = "STT_PROVIDER" if stt == "deepgram" else "TTS_PROVIDER"
        raise ConfigError("DEEPGRAM_API_KEY", f"required because {which}=deepgram")
    if nlu == "openai" and not openai_key:
        raise ConfigError("OPENAI_API_KEY", "required because NLU_PROVIDER=openai")

    if production:
        if debug:
            raise ConfigError("DEBUG", "must be off when APP_ENV=production")
        if secret_key == DEV_SECRET_KEY or len(secret_key) < 50:
            raise ConfigError("SECRET_KEY", "set a random value of at least 50 characters")
        if not allowed_hosts:
            raise ConfigError("ALLOWED_HOSTS", "list the host names this server answers to")
        if not keys:
            raise ConfigError("FIELD_ENCRYPTION_KEYS", "required when APP_ENV=production")
        if DEV_FIELD_ENCRYPTION_KEY in keys:
            raise ConfigError("FIELD_ENCRYPTION_KEYS", "the development key is not allowed")
        if len(blind_index_key) < 32 or blind_index_key == DEV_BLIND_INDEX_KEY:
            raise ConfigError("BLIND_INDEX_KEY", "set a random value of at least 32 characters")
        if not twilio_token or twilio_token == DEV_TWILIO_AUTH_TOKEN:
            raise ConfigError("TWILIO_AUTH_TOKEN", "required when APP_ENV=production")
        if not twilio_sid:
            raise ConfigError("TWILIO_ACCOUNT_SID", "required when APP_ENV=production")
        if not public_base_url.startswith("https://"):
            raise ConfigError("PUBLIC_BASE_URL", "must be https:// when APP_ENV=production")
    if not keys:
        keys = [DEV_FIELD_ENCRYPTION_KEY]
        warnings.append("FIELD_ENCRYPTION_KEYS not set: using the development key")
    if not blind_index_key:
        blind_index_key = DEV_BLIND_INDEX_KEY
    if not twilio_token:
        twilio_token = DEV_TWILIO_AUTH_TOKEN

    clinic_tz = reader.text("CLINIC_TIME_ZONE", "America/New_York")
    try:
        zoneinfo.ZoneInfo(clinic_tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("CLINIC_TIME_ZONE", f"unknown time zone {clinic_tz!r}") from None

    opening_hours = reader.text("CLINIC_OPENING_HOURS", "mon-fri 08:00-17:00")
    try:
        parse_opening_hours(opening_hours, clinic_tz)
    except ValueError as exc:
        raise ConfigError("CLINIC_OPENING_HOURS", str(exc)) from None
    carriers = reader.items("CLINIC_ACCEPTED_CARRIERS", list(DEFAULT_CARRIERS))

    # A live call writes a heartbeat every CALL_HEARTBEAT_SECONDS; the sweep finishes a call
    # whose heartbeat is CALL_STALE_SECONDS old. Two missed beats must never look like a death.
    heartbeat_seconds = reader.number("CALL_HEARTBEAT_SECONDS", 10.0, minimum=1.0)
    stale_seconds = reader.number("CALL_STALE_SECONDS", 30.0, minimum=2.0)
    if stale_seconds < 2 * heartbeat_seconds:
        raise ConfigError(
            "CALL_STALE_SECONDS",
            f"must be at least twice CALL_HEARTBEAT_SECONDS ({2 * heartbeat_seconds:g})",
        )

    log_format = reader.choice("LOG_FORMAT", ("json", "console", "auto"), "auto")
    log_json = production if log_format == "auto" else log_format == "json"

    email_url = reader.text("EMAIL_URL", "filemail://")
    try:
        email = environ.Env.email_url_config(email_url)
    except (ValueError, KeyError) as exc:
        raise ConfigError("EMAIL_URL", "expected smtp://user:password@host:port") from exc
    if email["EMAIL_BACKEND"].endswith("filebased.EmailBackend"):
        # Development outbox: one file per message under var/outbox unless a path is given.
        path = email.get("EMAIL_FILE_PATH") or ""
        email["EMAIL_FILE_PATH"] = "/" + path if path else str(BASE_DIR / "var" / "outbox")
    if production and not email_url.startswith(("smtp://", "smtps://", "smtp+tls://")):
        raise ConfigError("EMAIL_URL", "production sends confirmations over SMTP")

    return Config(
        app_env=app_env,
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=reader.items("CSRF_TRUSTED_ORIGINS"),
        database=_database(reader),
        redis_url=reader.url("REDIS_URL", ("redis", "rediss")) or None,
        log_level=reader.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), "info").upper(),
        log_json=log_json,
        field_encryption_keys=keys,
        blind_index_key=blind_index_key,
        clinic_name=reader.text("CLINIC_NAME", "Riverside Family Clinic"),
        clinic_time_zone=clinic_tz,
        opening_hours=opening_hours,
        accepted_carriers=carriers,
        slot_horizon_days=reader.integer("SLOT_HORIZON_DAYS", 60, minimum=1),
        slot_hold_seconds=reader.integer("SLOT_HOLD_SECONDS", 120, minimum=10),
        transcript_retention_days=reader.integer("TRANSCRIPT_RETENTION_DAYS", 30, minimum=1),
        reprompt_limit=reader.integer("REPROMPT_LIMIT", 2, minimum=1),
        red_flag_min_confidence=_probability(reader, "RED_FLAG_MIN_CONFIDENCE", 0.8),
        call_silence_seconds=reader.number("CALL_SILENCE_SECONDS", 6.0, minimum=1.0),
        call_max_seconds=reader.integer("CALL_MAX_SECONDS", 900, minimum=60),
        call_database_retry_seconds=reader.number("CALL_DATABASE_RETRY_SECONDS", 6.0, minimum=0.0),
        drain_grace_seconds=reader.number("DRAIN_GRACE_SECONDS", 20.0, minimum=0.0),
        call_heartbeat_seconds=heartbeat_seconds,
        call_stale_seconds=stale_seconds,
        call_sweep_seconds=reader.number("CALL_SWEEP_SECONDS", 10.0, minimum=1.0),
        stt_provider=stt,
        tts_provider=tts,
        nlu_provider=nlu,
        nlu_timeout_seconds=reader.number("NLU_TIMEOUT_SECONDS", 3.0, minimum=0.1),
        # Hosted providers (clinic.circuit): failures in a row before calls go straight to the
        # fallback, and how long they do before one trial call.
        circuit_failure_threshold=reader.integer("CIRCUIT_FAILURE_THRESHOLD", 3, minimum=1),
        circuit_cooldown_seconds=reader.number("CIRCUIT_COOLDOWN_SECONDS", 30.0, minimum=1.0),
        twilio_account_sid=twilio_sid,
        twilio_auth_token=twilio_token,
        twilio_api_base_url=reader.url("TWILIO_API_BASE_URL", ("https", "http")),
        public_base_url=public_base_url,
        front_desk_number=front_desk,
        deepgram_api_key=deepgram_key,
        deepgram_base_url=reader.url("DEEPGRAM_BASE_URL", ("https", "http", "wss", "ws")),
        openai_api_key=openai_key,
        openai_base_url=reader.url("OPENAI_BASE_URL", ("https", "http")),
        openai_model=reader.text("OPENAI_MODEL", "gpt-4o-mini"),
        email=email,
        default_from_email=reader.text("DEFAULT_FROM_EMAIL", "appointments@clinic.example"),
        outbox_publish_timeout_seconds=reader.number(
            "OUTBOX_PUBLISH_TIMEOUT_SECONDS", 1.0, minimum=0.1
        ),
        outbox_relay_seconds=reader.number("OUTBOX_RELAY_SECONDS", 15.0, minimum=1.0),
        warnings=warnings,
        stt_whisper_model=reader.choice("STT_WHISPER_MODEL", WHISPER_MODELS, "base"),
        # Threads per decode (every core, at most four) and decodes at once.
        stt_whisper_threads=reader.integer(
            "STT_WHISPER_THREADS", max(1, min(4, os.cpu_count() or 1)), minimum=1
        ),
        stt_whisper_workers=reader.integer("STT_WHISPER_WORKERS", 1, minimum=1),
        stt_model_dir=reader.text("STT_MODEL_DIR", str(BASE_DIR / "var" / "models")),
    )
