from orders import apis
from shared_lib.urls import UUID, api_route

urlpatterns = [
    api_route("api/orders", apis.OrderListCreateApi.as_view(), "order-list"),
    api_route(rf"api/orders/(?P<order_id>{UUID})", apis.OrderDetailApi.as_view(), "order-detail"),
]
