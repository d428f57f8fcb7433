"""The one LOGGING of every process: the services, the expiration worker, the web client.

    from shared_lib.settings.logs import *  # noqa: F403   (shared_lib.settings.base does)
    LOG_LEVEL=DEBUG                  # the root logger's level; INFO unless set
    LOG_FORMAT=text                  # key=value lines for people; JSON objects by default

Every line goes to stderr with the correlation id of the request or event it belongs to
(shared_lib.correlation).
"""

from shared_lib.conf import env

__all__ = ["LOGGING"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_FORMATTERS = {
    "json": {"()": "shared_lib.correlation.JsonFormatter"},
    "text": {"()": "shared_lib.correlation.KeyValueFormatter", "format": TEXT_FORMAT},
}
# JSON unless "text" is asked for: JSON is what a cluster's log collector parses.
_STYLE = "text" if env("LOG_FORMAT", default="json").lower() == "text" else "json"
# The formatter of every line, gunicorn's own included (shared_lib.gunicorn_conf).
LINE_FORMATTER = _FORMATTERS[_STYLE]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "shared_lib.correlation.CorrelationFilter"}},
    "formatters": {"line": LINE_FORMATTER},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "filters": ["correlation"],
        }
    },
    "root": {"handlers": ["stderr"], "level": env("LOG_LEVEL", default="INFO").upper()},
    "loggers": {
        # Request errors are logged with their traceback here, never sent to clients.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}
