from django.db import models


class Visit(models.Model):
    """One row per request a demo view handled: proof that a view ran (or did not)."""

    view = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.view
