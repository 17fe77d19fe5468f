from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "intake"
    verbose_name = "Calls and patients"

    def ready(self) -> None:
        # Imported here: receivers import models, which are not ready at module import time.
        from clinic.signals import schedule_conflict_opened
        from intake.receivers import open_followup_for_schedule_conflict

        schedule_conflict_opened.connect(
            open_followup_for_schedule_conflict,
            dispatch_uid="intake.open_followup_for_schedule_conflict",
        )
