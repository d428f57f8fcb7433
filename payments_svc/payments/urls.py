from payments import apis
from shared_lib.urls import UUID, api_route

urlpatterns = [
    api_route("api/payments", apis.PaymentCreateApi.as_view(), "payment-create"),
    api_route("api/payments/webhooks/stripe", apis.StripeWebhookApi.as_view(), "payment-webhook"),
    api_route(
        rf"api/payments/(?P<payment_id>{UUID})", apis.PaymentDetailApi.as_view(), "payment-detail"
    ),
]
