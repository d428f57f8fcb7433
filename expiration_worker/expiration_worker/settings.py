"""expiration_worker settings: on the event bus, with no database and no web process.

Its state is the broker's: each pending expiry is a delayed task message in RabbitMQ.
"""

from shared_lib.conf import env
from shared_lib.service_settings import events_settings, logging_settings

INSTALLED_APPS = ["shared_lib", "expiration"]
DATABASES: dict = {}  # none: nothing here survives a restart except what RabbitMQ holds
USE_TZ = True
TIME_ZONE = "UTC"

globals().update(events_settings("expiration", inbox=False))

LOGGING = logging_settings(
    env("LOG_LEVEL", default="INFO").upper(),
    "text" if env("LOG_FORMAT", default="json").lower() == "text" else "json",
)
