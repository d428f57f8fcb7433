"""Thin HTTP adapter over payments.services (docs/api.md, POST /api/payments)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import selectors, services
from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.fields import IdField, ObjectBodySerializer, StrictRegexField
from shared_lib.schema import error_responses


class PaymentOrderSerializer(ObjectBodySerializer):
    """The order a payment names, judged on its own: the order is found before the rest
    of the body is."""

    orderId = IdField()


class PaymentInputSerializer(PaymentOrderSerializer):
    """One input error at a time, in the order of checks (docs/api.md): orderId, then
    the order itself (404 unless it is the caller's), then the token."""

    token = StrictRegexField(
        services.TOKEN_PATTERN,
        error_messages={"invalid": services.TOKEN_INVALID},
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
        user_id = uuid.UUID(request.user.id)
        named = PaymentOrderSerializer(data=request.data)
        named.is_valid(raise_exception=True)
        order_id = named.validated_data["orderId"]
        # Someone else's order is as unknown as a missing one, whatever the token says;
        # payment_create checks again under the order's row lock.
        if not selectors.order_exists_for(order_id=order_id, user_id=user_id):
            raise NotFound()
        serializer = PaymentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment = services.payment_create(
            user_id=user_id,
            # The service takes an id as the wire carries it (shared_lib.ids.parse_id).
            order_id=str(order_id),
            token=serializer.validated_data["token"],
        )
        return Response(PaymentOutputSerializer(payment).data, status=201)
