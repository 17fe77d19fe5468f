"""Permission shapes shared by admin classes: records that are kept, not edited by hand."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class NoAddOrDeleteMixin:
    """Rows made by the system (slots, conflicts) and kept for history: never added or
    deleted in the admin; whether they can be changed stays with the group's permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyMixin(NoAddOrDeleteMixin):
    """Records (calls, transcripts, the access log) that nobody edits, superusers included."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
