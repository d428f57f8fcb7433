"""Settings every service shares, as plain modules a service's settings.py star-imports.

    from shared_lib.settings.base import *  # noqa: F403    (a Django service with a database)
    from shared_lib.settings.events import *  # noqa: F403  (on the event bus)
    from shared_lib.settings.logs import *  # noqa: F403    (only LOGGING; base has it)

Each module reads the environment (shared_lib.conf) when it is imported, as Django loads
settings; a missing required variable stops start-up naming it.
"""
