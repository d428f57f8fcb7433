"""Thin HTTP adapter over payments.services (docs/api.md: POST /api/payments, GET
/api/payments/<id>, POST /api/payments/webhooks/stripe)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import gateway, selectors, services
from payments.throttles import PaymentCheckThrottle, PaymentCreateThrottle
from shared_lib.auth import IsSignedIn
from shared_lib.errors import BadRequest, NotFound
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


class PaymentActionSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The payment, as GET /api/payments/{id} reports it")
    status = serializers.ChoiceField(choices=["requires_action"])
    clientSecret = serializers.CharField(
        help_text="For Stripe.js (confirmCardPayment): runs the card's 3-D Secure challenge"
    )


class PaymentStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    orderId = serializers.UUIDField(source="order_id")
    status = serializers.ChoiceField(
        choices=sorted(set(services.REPORTED_STATUS.values())),
        source="reported_status",
        help_text=(
            "requires_action: waiting for the cardholder to authenticate; processing: "
            "Stripe has not answered yet; succeeded: paid; failed: not charged"
        ),
    )


class PaymentCheckSerializer(PaymentStatusSerializer):
    clientSecret = serializers.CharField(
        required=False,
        source="client_secret",
        help_text="Only while requires_action: to run the challenge again (confirmCardPayment)",
    )


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField()


class PaymentCreateApi(APIView):
    permission_classes = [IsSignedIn]
    throttle_classes = [PaymentCreateThrottle]

    @extend_schema(
        request=PaymentInputSerializer,
        # 202: the cardholder must authenticate (3-D Secure) in the browser first;
        # 402: the card was declined; 404: no such order of the caller's (503, from the
        # shared list, also when the payment provider cannot be reached or is still
        # processing the payment: a retry looks the same charge up, never makes another).
        responses={
            201: PaymentOutputSerializer,
            202: PaymentActionSerializer,
            **error_responses(402, 404),
        },
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
        try:
            payment = services.payment_create(
                user_id=user_id,
                # The service takes an id as the wire carries it (shared_lib.ids.parse_id).
                order_id=str(order_id),
                token=serializer.validated_data["token"],
            )
        except services.ActionRequired as action:
            body = {
                "id": action.attempt_id,
                "status": "requires_action",
                "clientSecret": action.client_secret,
            }
            return Response(PaymentActionSerializer(body).data, status=202)
        return Response(PaymentOutputSerializer(payment).data, status=201)


class PaymentDetailApi(APIView):
    permission_classes = [IsSignedIn]
    throttle_classes = [PaymentCheckThrottle]

    # 404 for anyone but the payer, as for a payment that does not exist.
    @extend_schema(responses={200: PaymentCheckSerializer})
    def get(self, request: Request, payment_id: str) -> Response:
        check = services.payment_check(
            payment_id=uuid.UUID(payment_id), user_id=uuid.UUID(request.user.id)
        )
        attempt = check.attempt
        payment = getattr(attempt, "payment", None)
        body = {
            "id": payment.id if payment is not None else attempt.id,
            "order_id": attempt.order_id,
            "reported_status": services.REPORTED_STATUS[attempt.status],
        }
        if check.client_secret:
            body["client_secret"] = check.client_secret
        return Response(PaymentCheckSerializer(body).data)


class StripeWebhookApi(APIView):
    """Stripe's events, proven by their signature instead of a session."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request={"application/json": {"type": "object", "description": "A Stripe event"}},
        # 400: Stripe-Signature missing, wrong or too old, or the body is no event.
        responses={200: WebhookReceivedSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        try:
            event = gateway.webhook_event(request.body, request.headers.get("Stripe-Signature"))
        except gateway.InvalidWebhook as exc:
            raise BadRequest(exc.message) from None
        services.stripe_event_apply(event_id=event.id, event_type=event.type, obj=event.object)
        return Response({"received": True})
