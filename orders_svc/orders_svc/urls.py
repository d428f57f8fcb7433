from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from shared_lib.urls import api_docs_urls

admin.site.site_header = "Ticketing orders admin"

urlpatterns = [
    path(settings.ADMIN_URL_PREFIX, admin.site.urls),
    path("api/orders/", include(api_docs_urls(prefix="api/orders"))),
    path("", include("orders.urls")),
]
