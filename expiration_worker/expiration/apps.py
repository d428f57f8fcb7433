from django.apps import AppConfig


class ExpirationConfig(AppConfig):
    name = "expiration"
