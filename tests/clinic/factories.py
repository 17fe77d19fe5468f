"""Factories for the calendar (factory_boy)."""

from __future__ import annotations

from datetime import date, time

import factory

from clinic.models import AppointmentType, AvailabilityRule, Provider, TimeOff


class ProviderFactory(factory.django.DjangoModelFactory[Provider]):
    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"Dr. Provider {n}")
    specialty = "Family medicine"


class AppointmentTypeFactory(factory.django.DjangoModelFactory[AppointmentType]):
    class Meta:
        model = AppointmentType
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Visit type {n}")
    duration_minutes = 30
    kind = AppointmentType.Kind.ANY

    @factory.post_generation
    def providers(self, create, extracted, **kwargs):
        if create and extracted:
            self.providers.set(extracted)


class RuleFactory(factory.django.DjangoModelFactory[AvailabilityRule]):
    class Meta:
        model = AvailabilityRule

    provider = factory.SubFactory(ProviderFactory)
    weekdays = [0, 1, 2, 3, 4]
    start_time = time(9)
    end_time = time(12)
    slot_minutes = 30
    effective_from = date(2020, 1, 1)


class TimeOffFactory(factory.django.DjangoModelFactory[TimeOff]):
    class Meta:
        model = TimeOff

    provider = factory.SubFactory(ProviderFactory)
    reason = "Conference"
