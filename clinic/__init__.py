"""The clinic project: settings, URLs, ASGI and Celery, and the clinic's calendar."""

from clinic.celery import app as celery_app

__all__ = ["celery_app"]
