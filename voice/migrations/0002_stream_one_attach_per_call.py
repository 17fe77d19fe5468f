"""One live stream per call, as a database fact.

Adds the grant's own copy of the CallSid (so the claiming UPDATE can check it on one row) and
the partial unique index that allows one used grant per call. Before the index is built, grants
already in the table are made to satisfy it: each gets its call's SID, and a call that had two
streams attached (the fault this closes) keeps only its first used grant; the later ones are
deleted, which only makes their tokens (expired within seconds anyway) unknown.
"""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery


def fill_call_sids(apps, schema_editor):
    StreamGrant = apps.get_model("voice", "StreamGrant")
    Call = apps.get_model("intake", "Call")
    StreamGrant.objects.update(
        call_sid=Subquery(Call.objects.filter(pk=OuterRef("call_id")).values("call_sid")[:1])
    )


def keep_first_attach_per_call(apps, schema_editor):
    StreamGrant = apps.get_model("voice", "StreamGrant")
    used = StreamGrant.objects.filter(used_at__isnull=False)
    twice = (
        used.order_by()
        .values("call_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("call_id", flat=True)
    )
    for call_id in list(twice):
        grants = used.filter(call_id=call_id).order_by("used_at", "pk")
        first = grants.first()
        grants.exclude(pk=first.pk).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("voice", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamgrant",
            name="call_sid",
            field=models.CharField(default="", max_length=64),
        ),
        migrations.RunPython(fill_call_sids, migrations.RunPython.noop),
        migrations.RunPython(keep_first_attach_per_call, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="streamgrant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("used_at__isnull", False)),
                fields=("call",),
                name="voice_streamgrant_one_stream_per_call",
            ),
        ),
    ]
