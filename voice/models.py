"""What the phone line itself must remember across processes: stream grants.

A call's answer webhook and its media-stream WebSocket can land on different Daphne
processes, so whatever connects the two has to live in the database, not in memory.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class StreamGrant(models.Model):
    """Permission, issued with a call's answer TwiML, to open that call's media stream once.

    The signed token (:mod:`voice.tokens`) carries the nonce and proves the grant is ours and
    recent; this row makes it single-use, which a signature alone cannot: ``used_at`` goes
    from NULL to a time exactly once, by one conditional UPDATE, whichever process asks first.
    Holds no PHI (a call reference and two times), so it needs no encryption.
    """

    call = models.ForeignKey("intake.Call", on_delete=models.CASCADE, related_name="stream_grants")
    nonce = models.CharField(max_length=64, unique=True)
    issued_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return f"Stream grant #{self.pk}"

    @property
    def used(self) -> bool:
        return self.used_at is not None
