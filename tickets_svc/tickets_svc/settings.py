"""tickets_svc settings: the shared base, on the event bus."""

from pathlib import Path

from shared_lib.service_settings import base_settings

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(base_settings(service="tickets", base_dir=BASE_DIR, apps=["tickets"], events=True))
