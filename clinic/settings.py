"""Django settings, built from the validated environment in :mod:`clinic.config`.

Nothing here reads ``os.environ`` directly: :func:`clinic.config.load_config` does that once
and refuses a wrong value with one line naming the variable.
"""

from __future__ import annotations

import os

import intake.schedule as intake_schedule
import voice.schedule as voice_schedule
from clinic import schedule as clinic_schedule
from clinic.config import BASE_DIR, load_config
from clinic.logs import logging_config

CONFIG = load_config(os.environ)

APP_ENV = CONFIG.app_env
DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins

INSTALLED_APPS = [
    "daphne",  # first, so that `manage.py runserver` serves ASGI through Daphne
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_prometheus",
    "clinic",
    "intake",
    "voice",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "clinic.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "clinic.urls"
ASGI_APPLICATION = "clinic.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Stored in UTC; shown in the clinic's zone (admin uses TIME_ZONE for display).
USE_TZ = True
TIME_ZONE = CONFIG.clinic_time_zone
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# var/ holds the embedded SQLite file and collected static files; it is never committed.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if CONFIG.production
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

if CONFIG.production:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_AGE = 8 * 60 * 60  # one working day for staff
X_FRAME_OPTIONS = "DENY"

# --- Channels -------------------------------------------------------------------------------
REDIS_URL = CONFIG.redis_url
# Every Redis client gets explicit timeouts, never the library's defaults. channels-redis waits
# for messages with a blocking BZPOPMIN of 5 s; redis-py 8 defaults the socket timeout to 5 s,
# so an idle wait timed out and closed every quiet WebSocket. The socket timeout must exceed
# that wait. Connecting fails fast (Redis is on the same network) and dead connections are
# found by keep-alives and health checks instead of on first use.
REDIS_SOCKET_TIMEOUT = 15.0
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_CLIENT_OPTIONS = {
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": 10,
    "retry_on_timeout": False,
}
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **REDIS_CLIENT_OPTIONS}],
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Publishing a live-transcript event is best effort: a call never waits longer than this for
# the channel layer (the audio path does not use it at all).
CHANNEL_LAYER_SEND_TIMEOUT = 0.5

# --- Cache (rate limits, shared by every process when Redis is configured) ------------------
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_timeout": 1.0,
                "socket_connect_timeout": 1.0,
                "health_check_interval": 10,
            },
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# A rate-limit cache that cannot be reached lets the request through: refusing every caller
# because Redis restarted would be worse than a few minutes without limits.
RATELIMIT_FAIL_OPEN = True

# --- Celery ---------------------------------------------------------------------------------
# Without Redis, tasks run eagerly in the calling process (embedded default).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged only once it has finished
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and re-queued if its worker dies mid-way
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish (.delay(), send_task) waits for the broker this long, retried once, never kombu's
# defaults (4 s, retried for the whole of it, then 3 publish retries). Work that must not be
# lost goes through the outbox (clinic.outbox), which has its own shorter, unretried timeout
# and leaves what the broker did not take to its relay (every OUTBOX_RELAY_SECONDS).
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
OUTBOX_PUBLISH_TIMEOUT_SECONDS = CONFIG.outbox_publish_timeout_seconds
OUTBOX_RELAY_SECONDS = CONFIG.outbox_relay_seconds
CELERY_TIMEZONE = "UTC"
# Periodic jobs are declared by the apps that own them, in each app's `schedule.py`.
CELERY_BEAT_SCHEDULE = {
    **clinic_schedule.BEAT_SCHEDULE,
    **intake_schedule.BEAT_SCHEDULE,
    **voice_schedule.BEAT_SCHEDULE,
}
CELERY_BEAT_SCHEDULE[clinic_schedule.OUTBOX_RELAY] = clinic_schedule.outbox_relay_entry(
    OUTBOX_RELAY_SECONDS
)

# --- E-mail (booking confirmations, sent by a Celery task) --------------------------------
EMAIL_BACKEND = CONFIG.email["EMAIL_BACKEND"]
EMAIL_HOST = CONFIG.email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = CONFIG.email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = CONFIG.email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = CONFIG.email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = CONFIG.email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = CONFIG.email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = CONFIG.email.get("EMAIL_FILE_PATH", "")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = CONFIG.default_from_email

# --- Logging --------------------------------------------------------------------------------
LOGGING = logging_config(level=CONFIG.log_level, json_lines=CONFIG.log_json)

# --- Clinic ---------------------------------------------------------------------------------
CLINIC_NAME = CONFIG.clinic_name
CLINIC_OPENING_HOURS = CONFIG.opening_hours
CLINIC_ACCEPTED_CARRIERS = CONFIG.accepted_carriers
SLOT_HORIZON_DAYS = CONFIG.slot_horizon_days
SLOT_HOLD_SECONDS = CONFIG.slot_hold_seconds
TRANSCRIPT_RETENTION_DAYS = CONFIG.transcript_retention_days
REPROMPT_LIMIT = CONFIG.reprompt_limit
# A red flag heard below this recogniser confidence (0..1) is confirmed with the caller before
# emergency guidance (intake.understanding.triage); keypad input counts as 1.0.
RED_FLAG_MIN_CONFIDENCE = CONFIG.red_flag_min_confidence
CALL_SILENCE_SECONDS = CONFIG.call_silence_seconds
CALL_MAX_SECONDS = CONFIG.call_max_seconds
# How long a turn retries a database that does not answer before the caller is handed over.
CALL_DATABASE_RETRY_SECONDS = CONFIG.call_database_retry_seconds
# Drain on SIGTERM, heartbeats of live calls and the sweep of calls whose process died.
DRAIN_GRACE_SECONDS = CONFIG.drain_grace_seconds
CALL_HEARTBEAT_SECONDS = CONFIG.call_heartbeat_seconds
CALL_STALE_SECONDS = CONFIG.call_stale_seconds
CALL_SWEEP_SECONDS = CONFIG.call_sweep_seconds
FIELD_ENCRYPTION_KEYS = CONFIG.field_encryption_keys
BLIND_INDEX_KEY = CONFIG.blind_index_key

# --- Speech and telephony providers ---------------------------------------------------------
STT_PROVIDER = CONFIG.stt_provider
STT_WHISPER_MODEL = CONFIG.stt_whisper_model
STT_WHISPER_THREADS = CONFIG.stt_whisper_threads
STT_WHISPER_WORKERS = CONFIG.stt_whisper_workers
STT_MODEL_DIR = CONFIG.stt_model_dir
TTS_PROVIDER = CONFIG.tts_provider
NLU_PROVIDER = CONFIG.nlu_provider
NLU_TIMEOUT_SECONDS = CONFIG.nlu_timeout_seconds
CIRCUIT_FAILURE_THRESHOLD = CONFIG.circuit_failure_threshold
CIRCUIT_COOLDOWN_SECONDS = CONFIG.circuit_cooldown_seconds
TWILIO_ACCOUNT_SID = CONFIG.twilio_account_sid
TWILIO_AUTH_TOKEN = CONFIG.twilio_auth_token
TWILIO_API_BASE_URL = CONFIG.twilio_api_base_url  # empty: Twilio's own; tests use a fake
PUBLIC_BASE_URL = CONFIG.public_base_url
FRONT_DESK_NUMBER = CONFIG.front_desk_number
DEEPGRAM_API_KEY = CONFIG.deepgram_api_key
DEEPGRAM_BASE_URL = CONFIG.deepgram_base_url
OPENAI_API_KEY = CONFIG.openai_api_key
OPENAI_BASE_URL = CONFIG.openai_base_url
OPENAI_MODEL = CONFIG.openai_model

# The calendar refers to patients by this model name, like AUTH_USER_MODEL (see clinic.models).
CLINIC_PATIENT_MODEL = "intake.Patient"
