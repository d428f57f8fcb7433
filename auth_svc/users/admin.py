from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.forms import ModelForm
from django.http import HttpRequest

from shared_lib.admin import ReadOnlyAdmin
from users import services
from users.models import User, UserSession


class PasswordChangeForm(AdminPasswordChangeForm):
    """Django's admin form, with the service's password rules and its side effects (every
    session of the user ends)."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        password = cleaned.get("password1")
        if cleaned.get("set_usable_password") and password:
            error = services.password_error(password)
            if error:
                self.add_error("password1", error)
        return cleaned

    def save(self, commit: bool = True) -> User:
        usable = self.cleaned_data["set_usable_password"]
        password = self.cleaned_data["password1"] if usable else None
        services.user_set_password(user=self.user, password=password)
        return self.user


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["-date_joined"]
    list_display = ["email", "id", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "date_joined"]
    search_fields = ["email", "=id"]
    readonly_fields = ["id", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Status", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    filter_horizontal = ["groups"]
    change_password_form = PasswordChangeForm

    def save_model(self, request: HttpRequest, obj: User, form: ModelForm, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Through the service, which ends the user's sessions when they stop being staff.
        fields = {field.name for field in User._meta.concrete_fields}
        changed = [name for name in form.changed_data if name in fields]
        services.user_update(user=obj, **{name: getattr(obj, name) for name in changed})


@admin.register(UserSession)
class UserSessionAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["=id", "=user__id", "user__email"]
    list_select_related = ["user"]
    readonly_fields = ["id", "user", "created_at", "revoked_at"]
    date_hierarchy = "created_at"
