"""Thin HTTP adapter over payments.services (docs/api.md, POST /api/payments)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import services
from shared_lib.auth import IsSignedIn
from shared_lib.schema import error_responses


class PaymentInputSerializer(serializers.Serializer):
    """The request body, for the OpenAPI schema; services check it (docs/api.md)."""

    orderId = serializers.UUIDField()
    token = serializers.RegexField(
        services.TOKEN_PATTERN,
        help_text=(
            "A Stripe PaymentMethod id (pm_..., from Stripe.js Elements) or a legacy card "
            "token (tok_..., from Stripe Checkout), which Stripe makes into a PaymentMethod"
        ),
    )


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()


class PaymentCreateApi(APIView):
    permission_classes = [IsSignedIn]

    @extend_schema(
        request=PaymentInputSerializer,
        # 402: the card was declined; 404: no such order of the caller's (503, from the
        # shared list, also when the payment provider cannot be reached or is still
        # processing the payment: a retry looks the same charge up, never makes another).
        responses={201: PaymentOutputSerializer, **error_responses(402, 404)},
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        payment = services.payment_create(
            user_id=uuid.UUID(request.user.id),
            order_id=data.get("orderId"),
            token=data.get("token"),
        )
        return Response(PaymentOutputSerializer(payment).data, status=201)
