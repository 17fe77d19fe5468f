"""The PHI access log: who saw which patient's decrypted details, when and why.

Written before the page is rendered, so that PHI that cannot be accounted for is not shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.contrib.contenttypes.models import ContentType

from clinic.logs import get_logger
from intake.models import PhiAccess

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import Model

log = get_logger(__name__)


def phi_access_record(
    *,
    user: User,
    record: Model,
    fields: Iterable[str],
    purpose: str,
    request_id: str = "",
) -> PhiAccess:
    """Account for a staff member seeing decrypted PHI of ``record``.

    ``fields`` are field names (``"turns.text"`` for a related model's field), never values.
    Called before the page is rendered, so that if the record cannot be written the PHI is
    not shown either.
    """
    if purpose not in PhiAccess.Purpose.values:
        raise ValueError(f"unknown PHI access purpose: {purpose!r}")
    access = PhiAccess.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(record),
        object_id=record.pk,
        fields=list(fields),
        purpose=purpose,
        request_id=request_id[:64],
    )
    log.info(
        "phi_access_recorded",
        access_id=access.pk,
        user_id=user.pk,
        model=record._meta.label,
        object_id=record.pk,
        purpose=purpose,
    )
    return access
