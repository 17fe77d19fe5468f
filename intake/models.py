"""Patients, calls, transcripts and follow-ups (filled in by the patients issue)."""

from __future__ import annotations

from django.db import models


class Patient(models.Model):
    """A person who calls the clinic. Every identifying field is encrypted at rest."""

    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Patient #{self.pk}"
