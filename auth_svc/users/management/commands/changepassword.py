"""Django's `changepassword`, which also ends every session of the user, as any password
change does (users.services.user_set_password)."""

import getpass
from typing import Any

from django.contrib.auth.management.commands import changepassword

from users import services
from users.models import User


class Command(changepassword.Command):
    def handle(self, *args: Any, **options: Any) -> str:
        before = {user.pk: user.password for user in self._users(options)}
        result = super().handle(*args, **options)
        for user in self._users(options):
            if before.get(user.pk) != user.password:
                services.user_sessions_revoke(user=user)
        return result

    @staticmethod
    def _users(options: dict[str, Any]) -> list[User]:
        # The account Django's command looks up, the same way.
        username = options["username"] or getpass.getuser()
        return list(User.objects.using(options["database"]).filter(email=username))
