from shared_lib.urls import api_route
from users import apis

urlpatterns = [
    api_route("signup", apis.SignUpApi.as_view(), "signup"),
    api_route("signin", apis.SignInApi.as_view(), "signin"),
    api_route("signout", apis.SignOutApi.as_view(), "signout"),
    api_route("currentuser", apis.CurrentUserApi.as_view(), "currentuser"),
    api_route("password-reset", apis.PasswordResetApi.as_view(), "password-reset"),
    api_route(
        "password-reset/confirm", apis.PasswordResetConfirmApi.as_view(), "password-reset-confirm"
    ),
]
