from users.models import User


def user_get_active(*, user_id: str) -> User | None:
    return User.objects.filter(id=user_id, is_active=True).first()
