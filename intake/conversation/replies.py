"""The two intents nearly every question branches on, named as a front desk would say them."""

from __future__ import annotations

from intake.understanding.types import Intent

YES = Intent.AFFIRM
NO = Intent.DENY
