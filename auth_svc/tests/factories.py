"""Small factories: users signed up through the service, as the API would."""

from __future__ import annotations

from users import services
from users.models import User

PASSWORD = "correct horse battery"


def make_user(email: str = "buyer@example.com", **flags: bool) -> User:
    """A signed-up user with password PASSWORD; `flags` (is_staff, is_active…) set after."""
    user = services.user_sign_up(email=email, password=PASSWORD)
    if flags:
        User.objects.filter(id=user.id).update(**flags)
        user.refresh_from_db()
    return user
