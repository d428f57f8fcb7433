"""Thin HTTP adapter over payments.services (docs/api.md, POST /api/payments)."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import services
from payments.models import OrderReplica
from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.fields import IdField, ObjectBodySerializer, StrictRegexField
from shared_lib.schema import error_responses


class PaymentInputSerializer(ObjectBodySerializer):
    """One input error at a time, in the order of checks (docs/api.md): orderId, then
    the order itself (404 unless it is the caller's), then the token."""

    orderId = IdField()
    token = StrictRegexField(
        services.TOKEN_PATTERN,
        error_messages={"invalid": services.TOKEN_INVALID},
        help_text=(
            "A Stripe PaymentMethod id (pm_..., from Stripe.js Elements) or a legacy card "
            "token (tok_..., from Stripe Checkout), which Stripe makes into a PaymentMethod"
        ),
    )

    def validate_orderId(self, order_id: uuid.UUID) -> uuid.UUID:
        # Someone else's order is as unknown as a missing one, whatever the token says;
        # payment_create checks again under the order's row lock.
        if not OrderReplica.objects.filter(id=order_id, user_id=self.context["user_id"]).exists():
            raise NotFound()
        return order_id

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # Only the first field's errors: a bad orderId leaves the token unjudged.
            field, messages = next(iter(exc.detail.items()))
            raise serializers.ValidationError({field: messages}) from None


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
        serializer = PaymentInputSerializer(data=request.data, context={"user_id": user_id})
        serializer.is_valid(raise_exception=True)
        payment = services.payment_create(
            user_id=user_id,
            # The service takes an id as the wire carries it (shared_lib.ids.parse_id).
            order_id=str(serializer.validated_data["orderId"]),
            token=serializer.validated_data["token"],
        )
        return Response(PaymentOutputSerializer(payment).data, status=201)
