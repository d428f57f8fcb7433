from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from shared_lib.auth import SessionUser
from users.models import UserSession


def _live(session: SessionUser) -> QuerySet[UserSession]:
    """The session a verified token names while it is live: not revoked, younger than
    SESSION_MAX_AGE_SECONDS, of an active user who is the token's. Found by primary key."""
    oldest = timezone.now() - timedelta(seconds=settings.SESSION_MAX_AGE_SECONDS)
    return UserSession.objects.filter(
        id=session.sid,
        user_id=session.id,
        user__is_active=True,
        revoked_at__isnull=True,
        created_at__gt=oldest,
    )


def session_get_live(*, session: SessionUser) -> UserSession | None:
    if session.sid is None:  # a token naming no session: nothing to sign out
        return None
    return _live(session).select_related("user").order_by().first()


def session_is_live(session: SessionUser) -> bool:
    """SESSION_CHECK: shared_lib.auth asks it about every verified token in this service."""
    return session.sid is not None and _live(session).exists()
