"""manage.py orders_republish_completed: order.completed told again for every complete
order, for a service that began consuming it later (docs/deploy.md)."""

import io

import pytest
from django.core.management import CommandError, call_command

from orders import services
from orders.models import Order
from shared_lib.models import OutboxEvent, StaffAction
from shared_lib.staff import Actor
from tests.factories import order_row

pytestmark = pytest.mark.django_db


def test_every_complete_order_is_told_again_and_the_run_recorded():
    complete = [order_row(status=Order.Status.COMPLETE, version=1) for _ in range(3)]
    order_row()  # unpaid: not complete, not told
    order_row(status=Order.Status.CANCELLED, version=1)
    out = io.StringIO()

    call_command("orders_republish_completed", "--by", "ops@example.com", stdout=out)

    told = OutboxEvent.objects.filter(subject="order.completed")
    assert sorted((e.data["id"], e.data["version"]) for e in told) == sorted(
        (str(o.id), 1) for o in complete
    )
    assert OutboxEvent.objects.count() == 3
    assert len({e.correlation_id for e in told}) == 1  # one run, one correlation id
    assert out.getvalue().startswith("3 order completion(s) told again")
    action = StaffAction.objects.get()
    assert (action.actor_id, action.action, action.detail) == (
        "ops@example.com",
        "order.completed.republish",
        {"count": 3, "finished": True},
    )


def test_batches_cover_every_order_once():
    complete = {order_row(status=Order.Status.COMPLETE, version=1).id for _ in range(5)}

    told = services.order_completed_republish(actor=Actor(id="ops", name="ops"), batch=2)

    ids = [e.data["id"] for e in OutboxEvent.objects.filter(subject="order.completed")]
    assert told == 5
    assert sorted(ids) == sorted(str(i) for i in complete)


def test_who_runs_it_must_say_so():
    order_row(status=Order.Status.COMPLETE, version=1)

    with pytest.raises(CommandError, match="--by"):
        call_command("orders_republish_completed")

    assert OutboxEvent.objects.count() == 0
    assert StaffAction.objects.count() == 0


def test_a_run_that_fails_part_way_is_recorded_with_what_it_told(monkeypatch):
    for _ in range(3):
        order_row(status=Order.Status.COMPLETE, version=1)
    real = services.publish_many
    calls = []

    def failing_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "publish_many", failing_second_batch)

    with pytest.raises(RuntimeError):
        services.order_completed_republish(actor=Actor(id="ops", name="ops"), batch=2)

    assert OutboxEvent.objects.count() == 2  # the first batch went out
    action = StaffAction.objects.get()
    assert action.detail == {"count": 2, "finished": False}
