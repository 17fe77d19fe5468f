"""Factories for intake's models (factory_boy + faker); the calendar's: tests/clinic/factories.py.

Values look like real intake data (names, US phone numbers, dates of birth, member IDs,
spoken sentences) so that the encryption-at-rest tests scan for realistic PHI. Objects are
created through the models' ``save()``, which computes the blind indexes.
"""

from __future__ import annotations

import datetime

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone

from intake.models import Call, Coverage, FollowUp, Patient, Turn

# A US number in E.164: area code and exchange never start with 0 or 1 ("%" is 1-9).
US_NUMBER = "+1%##%##%###"


def _join(user: User, create: bool, group_name: str | None) -> None:
    if create and group_name:
        user.groups.add(Group.objects.get(name=group_name))


class StaffUserFactory(factory.django.DjangoModelFactory[User]):
    """A staff member; ``StaffUserFactory.create(group="Front desk")`` adds them to a group."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    password = factory.django.Password("staff-password-2026")

    group = factory.PostGeneration(lambda user, create, name, **_: _join(user, create, name))


class PatientFactory(factory.django.DjangoModelFactory[Patient]):
    class Meta:
        model = Patient

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = factory.Faker("date_of_birth", minimum_age=1, maximum_age=95)
    phone = factory.Faker("numerify", text=US_NUMBER)
    email = factory.Faker("email")
    address = factory.Faker("address")
    preferred_language = Patient.Language.ENGLISH


class CoverageFactory(factory.django.DjangoModelFactory[Coverage]):
    class Meta:
        model = Coverage

    patient = factory.SubFactory(PatientFactory)
    carrier = factory.Iterator(["Aetna", "Blue Cross Blue Shield", "Cigna", "UnitedHealthcare"])
    member_id = factory.Faker("bothify", text="???#########", letters="ABCDEFGHJKLMNPQRSTUVWXYZ")
    group_number = factory.Faker("numerify", text="GRP-######")
    subscriber_relation = Coverage.Relation.SELF


class CallFactory(factory.django.DjangoModelFactory[Call]):
    class Meta:
        model = Call

    call_sid = factory.Faker("hexify", text="CA" + "^" * 32)
    caller_number = factory.Faker("numerify", text=US_NUMBER)
    started_at = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(minutes=5))
    phase = "greeting"


class TurnFactory(factory.django.DjangoModelFactory[Turn]):
    class Meta:
        model = Turn

    call = factory.SubFactory(CallFactory)
    sequence = factory.Sequence(lambda n: n + 1)
    speaker = Turn.Speaker.CALLER
    text = factory.Faker("sentence", nb_words=10)
    stt_final_ms = 180
    understanding_ms = 40


class FollowUpFactory(factory.django.DjangoModelFactory[FollowUp]):
    class Meta:
        model = FollowUp

    reason = FollowUp.Reason.CALLBACK_REQUESTED
    priority = FollowUp.Priority.NORMAL
    call = factory.SubFactory(CallFactory)
    summary = factory.Faker("sentence", nb_words=8)
    due = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(hours=4))
