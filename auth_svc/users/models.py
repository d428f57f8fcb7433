import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    """Used by `createsuperuser`; the API creates users through users.services."""

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        user = self.model(email=email.strip().lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> "User":
        # The admin's sign-in form passes what was typed; stored emails are lower case.
        return self.get(email=(username or "").strip().lower())

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # unique=True is what Django requires of USERNAME_FIELD; the Lower() constraint
    # below is what makes it case-insensitive.
    email = models.EmailField(max_length=254, unique=True)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    class Meta:
        constraints = [
            # Case-insensitive uniqueness in the database itself: two simultaneous
            # sign-ups with one address cannot both insert, whatever the app checked.
            models.UniqueConstraint(Lower("email"), name="users_user_email_ci_unique"),
        ]
        ordering = ["-date_joined"]

    def __str__(self) -> str:
        return self.email


class UserSession(models.Model):
    """One sign-in: every token minted for it names it (`sid`), renewals included."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sessions")
    # Sign-in time: the session's maximum age runs from here, whatever its tokens say.
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.created_at:%Y-%m-%d %H:%M:%S}"


class PasswordReset(models.Model):
    """A password reset link sent to a user's email: single-use, valid for an hour. Only
    the token's SHA-256 is kept, so the table cannot be used to reset anyone's password."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_resets")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"reset for {self.user_id} @ {self.created_at:%Y-%m-%d %H:%M:%S}"
