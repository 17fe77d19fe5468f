"""Create the two staff groups and give them the calendar's permissions.

Front desk works appointments and reads the schedule; Administrators edit providers, their
rules and time off, and appointment types. Intake's migrations add their own models'
permissions to the same groups.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

FRONT_DESK = "Front desk"
ADMINISTRATORS = "Administrators"

GRANTS = {
    FRONT_DESK: [
        "view_provider",
        "view_appointmenttype",
        "view_availabilityrule",
        "view_timeoff",
        "view_slot",
        "view_appointment",
        "change_appointment",
        "add_appointment",
        "view_scheduleconflict",
        "change_scheduleconflict",
    ],
    ADMINISTRATORS: [
        "view_provider",
        "add_provider",
        "change_provider",
        "delete_provider",
        "view_appointmenttype",
        "add_appointmenttype",
        "change_appointmenttype",
        "delete_appointmenttype",
        "view_availabilityrule",
        "add_availabilityrule",
        "change_availabilityrule",
        "delete_availabilityrule",
        "view_timeoff",
        "add_timeoff",
        "change_timeoff",
        "delete_timeoff",
        "view_slot",
        "change_slot",
        "view_appointment",
        "add_appointment",
        "change_appointment",
        "view_scheduleconflict",
        "change_scheduleconflict",
    ],
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    app_config = apps.get_app_config("clinic")
    app_config.models_module = True  # the migration state's app stub lacks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.filter(
            content_type__app_label="clinic", codename__in=codenames
        )
        group.permissions.add(*permissions)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GRANTS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
