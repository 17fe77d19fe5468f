"""Patients, calls, transcripts and follow-ups; the intake conversation."""
