"""What the phone line itself must remember across processes: stream grants.

A call's answer webhook and its media-stream WebSocket can land on different Daphne
processes, so whatever connects the two has to live in the database, not in memory. That
includes the rule "one live stream per call": two streams attached to one call would mean two
agents talking over each other to one caller and writing one call's turns twice, so the
database refuses the second attach, whichever process or token it comes from.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class StreamGrant(models.Model):
    """Permission, issued with a call's answer TwiML, to open that call's media stream once.

    The signed token (:mod:`voice.tokens`) carries the nonce and proves the grant is ours and
    recent; this row makes it single-use, which a signature alone cannot: ``used_at`` goes
    from NULL to a time exactly once, by one conditional UPDATE, whichever process asks first.

    A call can hold several grants (Twilio may fetch the answer TwiML again, and a replayed
    answer gets a fresh token), but at most one of them is ever used: the partial unique
    index :attr:`Meta.constraints` ``voice_streamgrant_one_stream_per_call`` allows one used
    grant per call. The first stream to attach wins; any later attach with another token of
    that call fails its UPDATE on the index (on PostgreSQL it waits for the first to commit,
    then fails) and is refused. First-wins rather than newest-wins: the newest token is the one
    a replay just obtained, while the stream Twilio opens carries the token it was given first.

    ``call_sid`` repeats the call's SID so that the claiming UPDATE can check the ``start``
    message's CallSid on the grant's own row, in the same statement: a ``start`` for another
    call never uses up this call's token. Holds no PHI (ids and times), so no encryption.
    """

    call = models.ForeignKey("intake.Call", on_delete=models.CASCADE, related_name="stream_grants")
    call_sid = models.CharField(max_length=64, default="")
    nonce = models.CharField(max_length=64, unique=True)
    issued_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["call"],
                condition=models.Q(used_at__isnull=False),
                name="voice_streamgrant_one_stream_per_call",
            ),
        ]

    def __str__(self) -> str:
        return f"Stream grant #{self.pk}"

    @property
    def used(self) -> bool:
        return self.used_at is not None
