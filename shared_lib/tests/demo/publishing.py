"""A view that publishes an event, and its URLconf: set ROOT_URLCONF to this module.

POST /demo/publish-ticket publishes one ticket.created inside a transaction and answers
{"eventId": ...}; the tests check what the outbox row carries from the request.
"""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from shared_lib.events import Subject, publish
from tests.demo.factories import ticket_data


@require_POST
def publish_ticket(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        event_id = publish(Subject.TICKET_CREATED, ticket_data(title="From a request"))
    return JsonResponse({"eventId": str(event_id)})


urlpatterns = [path("demo/publish-ticket", publish_ticket)]
