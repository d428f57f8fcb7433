from django.apps import AppConfig


class SharedLibConfig(AppConfig):
    name = "shared_lib"
    verbose_name = "Shared library"

    def ready(self) -> None:
        # Registers the OpenAPI description of the session auth with drf-spectacular.
        from shared_lib import schema  # noqa: F401
