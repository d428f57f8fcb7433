"""OpenAPI description of the session auth, so every service's schema documents it.

# nothing to call: shared_lib's AppConfig.ready() imports this module, and
# drf-spectacular picks the extension up for every view using JWTAuthentication.
# /api/<svc>/schema/ then lists the "session" cookie and Bearer schemes.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from shared_lib.auth import SESSION_COOKIE


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "shared_lib.auth.JWTAuthentication"
    name = ["sessionCookie", "bearerAuth"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either one signs the caller in: two alternatives, not one combined requirement.
        return [{"sessionCookie": []}, {"bearerAuth": []}]


def document_paths_without_slash(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list:
    """SPECTACULAR_SETTINGS PREPROCESSING_HOOKS: `^signup/?$` is documented as `.../signup`.

    API routes accept an optional trailing slash (nothing under /api/ redirects), and the
    canonical form, the one the DESIGN names, has none.
    """
    documented = []
    for path, path_regex, method, callback in endpoints:
        if path_regex.endswith("/?$") and path.endswith("/"):
            path = path.rstrip("/")
        documented.append((path, path_regex, method, callback))
    return documented
