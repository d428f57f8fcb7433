"""Settings every service shares, as plain modules a service's settings.py star-imports.

    from shared_lib.settings import name_service

    name_service("tickets", __file__)  # first: the shared modules name everything after it
    from shared_lib.settings.base import *  # noqa: E402, F403    (a Django service with a database)
    from shared_lib.settings.events import *  # noqa: E402, F403  (on the event bus)
    from shared_lib.settings.logs import *  # noqa: E402, F403    (only LOGGING; base has it)

Each module reads the environment (shared_lib.conf) when it is imported, as Django loads
settings; a missing required variable stops start-up naming it.

What tells one service from another behind the one gateway host (its URL space for static
files and the admin, its admin cookies, its rate-limit keys, its API title, its name on the
event bus, its URLconf) is derived from the name given here, once, so no service can end up
with a value copied from another.
"""

from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Service:
    """The service whose settings this process loads."""

    name: str  # "tickets": URLs, cookies, rate-limit keys, queues
    package: str  # "tickets_svc": the project package (its urls and wsgi modules)
    directory: Path  # the project's directory; collectstatic writes staticfiles/ there


_named: Service | None = None


def name_service(name: str, settings_file: str) -> None:
    """Name the service whose settings module (`settings_file`, its `__file__`) is loading.

    A process runs one service, so a second, different name is refused rather than
    leaving the shared modules, imported once, describing the first."""
    global _named
    path = Path(settings_file).resolve()
    service = Service(name=name, package=path.parent.name, directory=path.parent.parent)
    if _named is not None and _named != service:
        raise ImproperlyConfigured(
            f"These settings are {_named.name}'s already; one process runs one service"
            f" (asked to name it {name!r})."
        )
    _named = service


def templates(*context_processors: str) -> list[dict]:
    """TEMPLATES: Django's engine over each app's templates/, with these context processors."""
    return [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": list(context_processors)},
        }
    ]


def named_service() -> Service:
    """The service name_service named; the shared settings modules read it."""
    if _named is None:
        raise ImproperlyConfigured(
            "A service's settings call shared_lib.settings.name_service(name, __file__)"
            " before importing the shared settings."
        )
    return _named
