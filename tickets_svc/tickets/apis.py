"""Thin HTTP adapters over tickets.services (DESIGN.md §3, /api/tickets...)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.fields import RawValue
from shared_lib.pagination import PAGE_PARAMETERS, paginate
from tickets import selectors, services


class TicketInputSerializer(serializers.Serializer):
    # Only the shape is checked here; the rules and their messages are in services.
    title = RawValue()
    price = RawValue()


class TicketOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    price = serializers.DecimalField(max_digits=8, decimal_places=2, coerce_to_string=False)
    userId = serializers.UUIDField(source="user_id")
    version = serializers.IntegerField()
    orderId = serializers.UUIDField(source="order_id", allow_null=True)


def _input(request: Request) -> dict:
    serializer = TicketInputSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class TicketListCreateApi(APIView):
    def get_permissions(self) -> list:
        return [IsSignedIn()] if self.request.method == "POST" else []

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: TicketOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        page = paginate(request, selectors.ticket_list_available())
        return page.response(TicketOutputSerializer(page.items, many=True).data)

    @extend_schema(request=TicketInputSerializer, responses={201: TicketOutputSerializer})
    def post(self, request: Request) -> Response:
        ticket = services.ticket_create(user_id=uuid.UUID(request.user.id), **_input(request))
        return Response(TicketOutputSerializer(ticket).data, status=201)


class TicketDetailApi(APIView):
    def get_permissions(self) -> list:
        return [IsSignedIn()] if self.request.method == "PUT" else []

    @extend_schema(responses={200: TicketOutputSerializer})
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = selectors.ticket_get(ticket_id=uuid.UUID(ticket_id))
        if ticket is None:
            raise NotFound()
        return Response(TicketOutputSerializer(ticket).data)

    @extend_schema(request=TicketInputSerializer, responses={200: TicketOutputSerializer})
    def put(self, request: Request, ticket_id: str) -> Response:
        ticket = services.ticket_update(
            ticket_id=uuid.UUID(ticket_id), user_id=uuid.UUID(request.user.id), **_input(request)
        )
        return Response(TicketOutputSerializer(ticket).data)
