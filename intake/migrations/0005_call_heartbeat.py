# Heartbeats of live calls and the process serving them, for the sweep of calls whose
# process died; the "handed over mid-call" follow-up reason used when a process drains.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0004_confirmations"),
    ]

    operations = [
        migrations.AddField(
            model_name="call",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="call",
            name="served_by",
            field=models.CharField(blank=True, editable=False, max_length=200),
        ),
        migrations.AlterField(
            model_name="followup",
            name="reason",
            field=models.CharField(
                choices=[
                    ("emergency", "Emergency flagged"),
                    ("callback_requested", "Callback requested"),
                    ("insurance_not_accepted", "Insurance not accepted"),
                    ("no_slots", "No slots"),
                    ("booking_failed", "Booking failed"),
                    ("transfer_failed", "Transfer failed"),
                    ("call_dropped", "Call dropped"),
                    ("handed_over", "Handed over mid-call"),
                    ("schedule_conflict", "Schedule conflict"),
                ],
                max_length=24,
            ),
        ),
        migrations.AddIndex(
            model_name="call",
            index=models.Index(
                condition=models.Q(("outcome", "in_progress")),
                fields=["heartbeat_at"],
                name="call_in_progress_heartbeat",
            ),
        ),
    ]
