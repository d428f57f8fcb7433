"""Admin single sign-on: the site's session token opens every service's Django admin.

    INSTALLED_APPS = ["shared_lib.admin_sso.SignOnAdminConfig", ...]  # for django.contrib.admin
    MIDDLEWARE = [..., AuthenticationMiddleware, "shared_lib.admin_sso.AdminSignOnMiddleware"]
    AUTHENTICATION_BACKENDS = [ModelBackend, "shared_lib.admin_sso.SignOnStaffBackend"]

(shared_lib.settings.base does all three; auth_svc sets ADMIN_STAFF_SOURCE = "user-table".)
Who gets in, on every request under /admin/<svc>/:

- A verified session token (EdDSA, unexpired: shared_lib.auth) whose user is staff: the admin,
  no second sign-in. "Staff" comes from where it is known best (ADMIN_STAFF_SOURCE):
  "token" (every service but auth): the token's `staff` claim. The person is stood for by a
  shadow row of this service's own user table (username = the token's id), made on the first
  visit: the admin needs a real row for request.user and for LogEntry's foreign key. The row
  has no usable password, so it opens nothing by itself; only a staff token does.
  "user-table" (auth_svc): the users table is the token's source, so the row with the token's
  id must be active and is_staff right now; a demotion there takes effect at once.
- A signed-in non-staff user: a 403 page saying so. Anonymous: a redirect to the site's
  sign-in (ADMIN_SIGNIN_URL) with `next` back to the page.
- Django's own password login stays at /admin/<svc>/login/ for local accounts made with
  `manage.py createsuperuser`: the way in when auth_svc or the keys are broken. It is
  rate limited as the sign-in API is (shared_lib.ratelimit): every attempt per client IP,
  failed ones per account; over a limit the form answers 429 without checking a password.

Permissions: single sign-on staff may view every model in every admin, and do nothing else
(SignOnStaffBackend). The domain admins are read-only anyway (shared_lib.admin.ReadOnlyAdmin);
what remains writable outside auth is the service's local user table, and letting every SSO
user mint a local password account there would leave a way in that outlives their demotion.
Rights a row has in Django terms (is_superuser, permissions) still apply on top: in auth_svc
those are the real user's; on a shadow row only a local superuser can grant them.

Revocation: a demoted or deactivated user's sessions end in auth_svc at once, so their
tokens are never renewed; a token already issued carries `staff` until it expires, so the
window is at most SESSION_TTL_SECONDS (default 15 min) in the services that trust the
claim. Unticking "active" on the shadow row locks them out of that service at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.contrib.auth import logout as end_django_session
from django.contrib.auth.hashers import make_password
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from shared_lib.auth import SessionUser, current_user
from shared_lib.errors import keep_error_page
from shared_lib.ratelimit import sign_in_account_attempt, sign_in_ip_attempt

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# Set on the request's user object only (never stored): what SignOnStaffBackend grants by.
SIGN_ON_ATTRIBUTE = "admin_sign_on"
STAFF_FROM_USER_TABLE = "user-table"
FORBIDDEN_TEMPLATE = "shared_lib/admin_forbidden.html"
SIGN_IN_THROTTLED = "Too many sign-in attempts. Try again in {seconds} seconds."


class SignOnAdminConfig(AdminConfig):
    """django.contrib.admin with SignOnAdminSite as `admin.site`, so every service's
    `@admin.register` lands on it unchanged."""

    default_site = "shared_lib.admin_sso.SignOnAdminSite"


def _sign_in_url(next_path: str) -> str:
    """The site's sign-in page, which comes back to `next_path` (it checks the target)."""
    query = QueryDict(mutable=True)
    query["next"] = next_path
    return f"{settings.ADMIN_SIGNIN_URL}?{query.urlencode(safe='/')}"


class SignOnAdminSite(admin.AdminSite):
    login_template = "shared_lib/admin_login.html"

    def admin_view(self, view: Callable[..., HttpResponse], cacheable: bool = False) -> Any:
        guarded = super().admin_view(view, cacheable)  # never_cache, csrf_protect, the check

        def refuse_or_serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # Django would send everyone without permission to its password form; send
            # people to the sign-in they actually have, or tell them why they cannot pass.
            # Logout keeps Django's handling (a redirect to the index).
            if self.has_permission(request) or request.path == reverse(
                "admin:logout", current_app=self.name
            ):
                return guarded(request, *args, **kwargs)
            response = self._refusal(request)
            add_never_cache_headers(response)
            return response

        return update_wrapper(refuse_or_serve, view)

    def _refusal(self, request: HttpRequest) -> HttpResponse:
        session = current_user(request)
        if session is None:
            return HttpResponseRedirect(_sign_in_url(request.get_full_path()))
        context = {
            **self.each_context(request),
            "title": "No access to this admin",
            "email": session.email,
            "signout_url": settings.ADMIN_SIGNOUT_URL,
        }
        return keep_error_page(TemplateResponse(request, FORBIDDEN_TEMPLATE, context, status=403))

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # The password form is for local accounts; it points staff at the site's sign-in.
        index = reverse("admin:index", current_app=self.name)
        context = {"site_sign_in_url": _sign_in_url(index), **(extra_context or {})}
        if request.method != "POST":
            return super().login(request, context)
        by_ip = sign_in_ip_attempt(request)
        if not by_ip.allowed:
            return self._throttled_login(request, context, by_ip.wait)
        by_account = sign_in_account_attempt(request.POST.get("username"))
        if not by_account.allowed:
            return self._throttled_login(request, context, by_account.wait)
        response = super().login(request, context)
        if isinstance(response, HttpResponseRedirect):  # signed in: not a failure
            by_account.give_back()
        return response

    def _throttled_login(
        self, request: HttpRequest, context: dict[str, Any], wait: float | None
    ) -> TemplateResponse:
        """The form again, refused before any password is checked."""
        # Imported here: this module is loaded with the app registry, before auth's models.
        from django.contrib.admin.forms import AdminAuthenticationForm

        seconds = max(1, int((wait or 0) + 0.999))
        context = {
            **self.each_context(request),
            "title": "Log in",
            "app_path": request.get_full_path(),
            "form": AdminAuthenticationForm(request),
            REDIRECT_FIELD_NAME: request.GET.get(REDIRECT_FIELD_NAME, ""),
            "throttled_message": SIGN_IN_THROTTLED.format(seconds=seconds),
            **context,
        }
        response = TemplateResponse(request, self.login_template, context, status=429)
        response["Retry-After"] = str(seconds)
        add_never_cache_headers(response)
        return keep_error_page(response)

    def logout(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if getattr(request.user, SIGN_ON_ATTRIBUTE, False):
            # The session is the site's token: ending only Django's session here would
            # leave the user signed in. The site's sign-out page ends the real one.
            end_django_session(request)
            return HttpResponseRedirect(settings.ADMIN_SIGNOUT_URL)
        return super().logout(request, extra_context)


def _shadow_user(session: SessionUser) -> AbstractBaseUser | None:
    """This service's row standing for a staff user of auth_svc; made or refreshed here."""
    user_model = get_user_model()
    # Keyed by the token's id, which never changes (an email can). get_or_create survives
    # two first visits at once: it reads again after the unique username refuses the
    # second insert.
    user, created = user_model.objects.get_or_create(
        **{user_model.USERNAME_FIELD: session.id},
        defaults={
            "email": session.email,
            "first_name": _greeting(session),
            "is_staff": True,
            "password": make_password(None),  # unusable: Django's login form cannot open it
        },
    )
    if not user.is_active:  # locked out of this service by a local administrator
        return None
    if not created and (user.email != session.email or not user.is_staff):
        user.email, user.first_name, user.is_staff = session.email, _greeting(session), True
        user.save(update_fields=["email", "first_name", "is_staff"])
    return user


def _greeting(session: SessionUser) -> str:
    # What the admin's header greets (get_short_name): the email, not the id in username.
    return session.email[:150]  # first_name's length


def _table_user(session: SessionUser) -> AbstractBaseUser | None:
    """auth_svc's own row for the token's user, if it may use the admin right now."""
    return get_user_model().objects.filter(pk=session.id, is_active=True, is_staff=True).first()


def staff_user_for(session: SessionUser) -> AbstractBaseUser | None:
    """The Django user the admin should see for a verified session, or None (no access)."""
    if settings.ADMIN_STAFF_SOURCE == STAFF_FROM_USER_TABLE:
        user = _table_user(session)
    elif session.staff:
        user = _shadow_user(session)
    else:
        user = None
    if user is not None:
        setattr(user, SIGN_ON_ATTRIBUTE, True)
    return user


class AdminSignOnMiddleware:
    """Under the admin's prefix, a staff session token becomes request.user.

    After AuthenticationMiddleware (whose session user it replaces) and CsrfViewMiddleware
    (which still checks every admin form). Only admin paths: APIs authenticate through
    DRF, and a staff user's API calls should not touch the user table.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(f"/{settings.ADMIN_URL_PREFIX}"):
            session = current_user(request)
            user = staff_user_for(session) if session is not None else None
            if user is not None:
                request.user = user

                async def auser() -> AbstractBaseUser:
                    return user

                request.auser = auser  # type: ignore[attr-defined]
        return self.get_response(request)


class SignOnStaffBackend:
    """View permission on every model for users admitted by single sign-on, nothing more.

    Not an authentication source (authenticate/get_user find nobody): the middleware
    decides who is admitted; this only answers the admin's permission questions. Duck-typed
    rather than a BaseBackend subclass, whose module imports models at import time.
    """

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        return None

    def get_user(self, user_id: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        _, _, codename = perm.partition(".")
        return self._signed_on(user_obj) and codename.startswith("view_")

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return self._signed_on(user_obj)

    @staticmethod
    def _signed_on(user_obj: Any) -> bool:
        return bool(getattr(user_obj, SIGN_ON_ATTRIBUTE, False)) and user_obj.is_active
