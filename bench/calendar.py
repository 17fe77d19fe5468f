"""Calendar benchmark: open_slots at scale, booking throughput, admin query counts.

Run on the embedded SQLite:      .venv/bin/python -m bench.calendar
Run on PostgreSQL:               DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
                                     .venv/bin/python -m bench.calendar
It creates and destroys its own test database; your data is not touched. Figures are
printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from datetime import time as clock
from datetime import timedelta
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ.setdefault("LOG_LEVEL", "warning")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import (  # noqa: E402
    CaptureQueriesContext,
    setup_test_environment,
    teardown_test_environment,
)
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from clinic.models import (  # noqa: E402
    Appointment,
    AppointmentType,
    AvailabilityRule,
    Provider,
    Slot,
)
from clinic.selectors import open_slots  # noqa: E402
from clinic.services import SlotTaken, appointment_book, slots_generate  # noqa: E402

PROVIDERS = 50
HORIZON_DAYS = 90
QUERY_REPEATS = int(os.environ.get("BENCH_REPEATS", "50"))
BOOKINGS = 300
THREADS = 4


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_clinic() -> AppointmentType:
    visit = AppointmentType.objects.create(name="Sick visit", duration_minutes=30)
    providers = Provider.objects.bulk_create(
        Provider(name=f"Dr. Bench {n:02d}", accepts_new_patients=n % 3 != 0)
        for n in range(PROVIDERS)
    )
    visit.providers.set(providers)
    AvailabilityRule.objects.bulk_create(
        AvailabilityRule(
            provider=provider,
            weekdays=[0, 1, 2, 3, 4],
            start_time=clock(8),
            end_time=clock(17),
            slot_minutes=30,
            effective_from=timezone.localdate(),
        )
        for provider in providers
    )
    return visit


def timed(fn, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    print(
        f"  {label:<44} p50 {statistics.median(samples):7.2f} ms   "
        f"p99 {percentile(samples, 0.99):7.2f} ms"
    )


def bench_open_slots(visit: AppointmentType) -> None:
    started = time.perf_counter()
    generated = slots_generate(horizon_days=HORIZON_DAYS)
    took = time.perf_counter() - started
    total = Slot.objects.count()
    print(
        f"slot generation: {generated.created} slots for {PROVIDERS} providers x "
        f"{HORIZON_DAYS} days in {took:.2f} s ({generated.created / took:,.0f} slots/s)"
    )
    started = time.perf_counter()
    slots_generate(horizon_days=HORIZON_DAYS)
    print(f"regeneration with nothing to change: {time.perf_counter() - started:.2f} s")
    print(f"open_slots over {total:,} slots ({QUERY_REPEATS} runs each, limit 3):")
    provider = Provider.objects.order_by("pk")[PROVIDERS // 2]
    far = timezone.now() + timedelta(days=60)
    cases = {
        "earliest, any provider": lambda: open_slots(limit=3),
        "by appointment type": lambda: open_slots(appointment_type=visit, limit=3),
        "type + provider": lambda: open_slots(appointment_type=visit, provider=provider, limit=3),
        "type + Thursday afternoons": lambda: open_slots(
            appointment_type=visit, weekdays=[3], part_of_day="afternoon", limit=3
        ),
        "type + new patient + from day 60": lambda: open_slots(
            appointment_type=visit, new_patient=True, start=far, limit=3
        ),
        "one provider, whole horizon (no limit)": lambda: open_slots(provider=provider),
    }
    for label, case in cases.items():
        case()  # warm
        report(label, timed(case, QUERY_REPEATS))


def bench_booking(visit: AppointmentType) -> None:
    candidates = [slot.pk for slot in open_slots(appointment_type=visit, limit=BOOKINGS * 2)]
    sequential = candidates[:BOOKINGS]
    started = time.perf_counter()
    for slot_id in sequential:
        appointment_book(slot_id=slot_id, appointment_type=visit)
    took = time.perf_counter() - started
    print(
        f"booking, one thread: {BOOKINGS} bookings in {took:.2f} s "
        f"({BOOKINGS / took:,.0f} bookings/s)"
    )

    contended = candidates[BOOKINGS:]
    outcomes = {"booked": 0, "taken": 0}
    lock = threading.Lock()

    def worker() -> None:
        for slot_id in contended:  # every thread tries every slot: maximal contention
            try:
                appointment_book(slot_id=slot_id, appointment_type=visit)
                result = "booked"
            except SlotTaken:
                result = "taken"
            with lock:
                outcomes[result] += 1
        connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    attempts = outcomes["booked"] + outcomes["taken"]
    print(
        f"booking, {THREADS} threads racing for the same {len(contended)} slots: "
        f"{attempts} attempts in {took:.2f} s ({attempts / took:,.0f} attempts/s), "
        f"{outcomes['booked']} booked, {outcomes['taken']} refused as taken "
        f"(double bookings: {outcomes['booked'] - len(contended)})"
    )


def fill_appointments(visit: AppointmentType, target: int) -> None:
    have = Appointment.objects.count()
    slots = list(
        Slot.objects.filter(status=Slot.Status.FREE).order_by("start")[: max(0, target - have)]
    )
    Appointment.objects.bulk_create(
        (Appointment(slot=slot, appointment_type=visit, reason="bench") for slot in slots),
        batch_size=1000,
    )
    Slot.objects.filter(pk__in=[slot.pk for slot in slots]).update(status=Slot.Status.BOOKED)


def bench_admin_queries(visit: AppointmentType) -> None:
    user = User.objects.create_superuser("bench", password="bench-password-2026")
    client = Client()
    client.force_login(user)
    pages = {
        "appointments": reverse("admin:clinic_appointment_changelist"),
        "slots": reverse("admin:clinic_slot_changelist"),
        "providers": reverse("admin:clinic_provider_changelist"),
        "schedule conflicts": reverse("admin:clinic_scheduleconflict_changelist"),
    }
    counts: dict[str, list[int]] = {name: [] for name in pages}
    sizes = (100, 10_000)
    for size in sizes:
        fill_appointments(visit, size)
        for name, url in pages.items():
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            assert response.status_code == 200
            counts[name].append(len(queries))
    print("admin list pages, queries per page load:")
    for name, (small, large) in counts.items():
        print(
            f"  {name:<20} {small:3d} at {sizes[0]:,} appointments, "
            f"{large:3d} at {Appointment.objects.count():,}"
        )


def main() -> None:
    setup_test_environment()
    # A database of its own, so that a test run at the same time is not disturbed.
    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "postgresql":
        test_settings["NAME"] = "clinic_bench"
    else:
        test_settings["NAME"] = str(Path(tempfile.gettempdir()) / "clinic-bench.sqlite3")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        vendor = connection.vendor
        print(f"== calendar benchmark on {vendor} ({os.cpu_count()} cores)")
        visit = build_clinic()
        bench_open_slots(visit)
        bench_booking(visit)
        bench_admin_queries(visit)
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
