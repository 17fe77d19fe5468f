"""Give the staff groups (created by clinic 0002) their permissions on intake's models.

Front desk works calls, patients and follow-ups: it reads calls and transcripts, keeps patient
and coverage details up to date, and opens and works follow-ups. Administrators have the same
and also read the PHI access log. Nobody gets add/change/delete on the access log: those
permissions do not exist (``default_permissions = ("view",)``). Calls and turns are written
by the phone agent only, so staff get ``view`` on them.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

FRONT_DESK = "Front desk"
ADMINISTRATORS = "Administrators"

FRONT_DESK_GRANTS = [
    "view_call",
    "view_turn",
    "view_patient",
    "add_patient",
    "change_patient",
    "view_coverage",
    "add_coverage",
    "change_coverage",
    "view_followup",
    "add_followup",
    "change_followup",
]

GRANTS = {
    FRONT_DESK: FRONT_DESK_GRANTS,
    ADMINISTRATORS: [*FRONT_DESK_GRANTS, "view_phiaccess"],
}


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    app_config = apps.get_app_config("intake")
    app_config.models_module = True  # the migration state's app stub lacks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.filter(
            content_type__app_label="intake", codename__in=codenames
        )
        missing = set(codenames) - set(permissions.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"intake permissions missing: {sorted(missing)}")
        group.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    intake_permissions = Permission.objects.filter(content_type__app_label="intake")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*intake_permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0002_patients_calls_followups"),
        ("clinic", "0002_staff_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
