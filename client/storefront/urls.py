from django.urls import path, re_path

from storefront import views

urlpatterns = [
    path("", views.ticket_list, name="ticket_list"),
    path("tickets/new", views.ticket_new, name="ticket_new"),
    path("tickets/mine", views.my_listings, name="my_listings"),
    path("tickets/<uuid:ticket_id>", views.ticket_detail, name="ticket_detail"),
    path("tickets/<uuid:ticket_id>/edit", views.ticket_edit, name="ticket_edit"),
    path("tickets/<uuid:ticket_id>/purchase", views.ticket_purchase, name="ticket_purchase"),
    path("orders", views.order_list, name="order_list"),
    path("orders/<uuid:order_id>", views.order_detail, name="order_detail"),
    path("orders/<uuid:order_id>/pay", views.order_pay, name="order_pay"),
    path(
        "orders/<uuid:order_id>/payments/<uuid:payment_id>",
        views.order_payment_check,
        name="order_payment_check",
    ),
    path("orders/<uuid:order_id>/cancel", views.order_cancel, name="order_cancel"),
    path("auth/signup", views.signup, name="signup"),
    path("auth/signin", views.signin, name="signin"),
    path("auth/signout", views.signout, name="signout"),
    path("auth/reset", views.password_reset, name="password_reset"),
    path("auth/reset/<str:token>", views.password_reset_confirm, name="password_reset_confirm"),
    # The Ingress sends every path no API claims here, unknown /api/ paths included; an
    # API client must get the API's JSON 404, never a web page.
    re_path(r"^api(/.*)?$", views.api_not_found),
]
