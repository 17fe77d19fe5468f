"""Signals the calendar sends so that other apps can react without being imported here."""

from django.dispatch import Signal

# Sent when a booked appointment no longer fits the schedule (time off or edited hours),
# inside the transaction that opens the conflict, so that what receivers write commits with
# it. Keyword argument: ``conflict`` (a ScheduleConflict). Intake opens a follow-up for staff
# on it; the calendar itself never moves or cancels the booking.
schedule_conflict_opened = Signal()
