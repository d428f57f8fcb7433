"""GET /bare: a ticket-shaped JSON object, the size of one item of GET /api/tickets."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

TICKET = {
    "id": "0b7e4b1c-52f4-4d5e-9b1e-2f4c8a1d9e3f",
    "title": "Bench ticket",
    "price": 20.5,
    "userId": "6f1c2d3e-4b5a-4978-8c6d-5e4f3a2b1c0d",
    "version": 0,
    "orderId": None,
}


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse(TICKET)


urlpatterns = [path("bare", bare)]
