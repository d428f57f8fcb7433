from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from shared_lib.urls import api_docs_urls
from tests.demo import apis, views

urlpatterns = [
    path("api/demo/whoami", apis.WhoAmIApi.as_view()),
    path("api/demo/profile", apis.ProfileApi.as_view()),
    path("api/demo/errors/<str:kind>", apis.ErrorApi.as_view()),
    path("api/demo/crash", apis.CrashApi.as_view()),
    path("api/demo/echo", apis.EchoApi.as_view()),
    path("api/demo/signout", apis.SignoutApi.as_view()),
    path("api/demo/throttled", apis.ThrottledApi.as_view()),
    path("api/demo/ping", views.ping),
    path("api/demo/current-user", views.current_user),
    path("demo/form", views.form_echo),
    path("api/demo/", include(api_docs_urls(prefix="api/demo"))),
    path(settings.ADMIN_URL_PREFIX, admin.site.urls),
]
