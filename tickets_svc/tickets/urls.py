from shared_lib.urls import UUID, api_route
from tickets import apis

urlpatterns = [
    api_route("api/tickets", apis.TicketListCreateApi.as_view(), "ticket-list"),
    api_route("api/tickets/mine", apis.TicketMineApi.as_view(), "ticket-mine"),
    api_route(
        rf"api/tickets/(?P<ticket_id>{UUID})", apis.TicketDetailApi.as_view(), "ticket-detail"
    ),
]
