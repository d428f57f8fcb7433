"""expiration_worker settings: on the event bus, with no database and no web process.

Its state is the broker's: each pending expiry is a delayed task message in RabbitMQ.
"""

from shared_lib.settings import name_service

name_service("expiration", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.events import *  # noqa: E402, F403
from shared_lib.settings.logs import *  # noqa: E402, F403

INSTALLED_APPS = ["shared_lib", "expiration"]
DATABASES: dict = {}  # none: nothing here survives a restart except what RabbitMQ holds
USE_TZ = True
TIME_ZONE = "UTC"

# No database for an inbox: its handlers are idempotent by nature.
EVENTS_INBOX = False
