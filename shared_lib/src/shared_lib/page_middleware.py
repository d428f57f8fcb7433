"""Django's session, user and messages middleware for pages only (the admin, its sign-in
form), never for the JSON API under API_PATH_PREFIX.

    MIDDLEWARE = [..., "shared_lib.page_middleware.SessionMiddleware", ...]  # shared_lib.settings
    request.session, request.user, messages    # on /admin/... as ever; not on /api/...

An API request is signed in by its token (shared_lib.auth, through DRF), and never reads a
session, Django's user or a message: building them and running their response hooks on
every API call was work for nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse


class _PagesOnly:
    get_response: Any

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(settings.API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_PagesOnly, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_PagesOnly, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_PagesOnly, messages.MessageMiddleware):
    pass
