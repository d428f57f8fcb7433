from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from shared_lib.urls import api_docs_urls

admin.site.site_header = "Ticketing payments admin"

urlpatterns = [
    path(settings.ADMIN_URL_PREFIX, admin.site.urls),
    path("api/payments/", include(api_docs_urls(prefix="api/payments"))),
    path("", include("payments.urls")),
]
