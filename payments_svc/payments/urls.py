from payments import apis
from shared_lib.urls import api_route

urlpatterns = [
    api_route("api/payments", apis.PaymentCreateApi.as_view(), "payment-create"),
]
