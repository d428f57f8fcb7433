"""orders_svc settings: the shared base, on the event bus, plus the reservation window."""

from pathlib import Path

from shared_lib.conf import env, env_int
from shared_lib.service_settings import base_settings

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(base_settings(service="orders", base_dir=BASE_DIR, apps=["orders"], events=True))

# How long an order holds its ticket while the buyer pays (15 minutes by default).
EXPIRATION_WINDOW_SECONDS = env_int("EXPIRATION_WINDOW_SECONDS", default=900, minimum=1)

# Unpaid orders one buyer may hold at once, so one account cannot reserve the catalogue.
ORDERS_MAX_ACTIVE_PER_USER = env_int("ORDERS_MAX_ACTIVE_PER_USER", default=5, minimum=1)
# Orders one buyer may place (DRF rate syntax); counted in Redis across every replica.
RATE_LIMIT_ORDERS = env("RATE_LIMIT_ORDERS", default="30/min")
