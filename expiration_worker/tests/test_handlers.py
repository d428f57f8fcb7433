"""The worker's event handlers are what the contracts declare it consumes."""

from django.conf import settings

from shared_lib.events.contracts import Subject, consumed_by
from shared_lib.events.registry import check_handlers, discover_handlers


def test_the_handlers_are_the_subjects_the_contracts_declare_for_this_service():
    check_handlers(settings.EVENTS_SERVICE)  # the worker's start-up check: no mismatch

    assert list(discover_handlers()) == consumed_by("expiration") == [Subject.ORDER_CREATED]
