"""Checks of a service's admin as single sign-on staff see it (shared_lib.admin_sso).

def test_staff_view_every_admin_page_read_only(staff_admin_client):
    assert_staff_views_every_model_read_only(staff_admin_client, "/admin/tickets/")
"""

from __future__ import annotations

from typing import Any


def assert_staff_views_every_model_read_only(client: Any, index_url: str) -> list[str]:
    """The admin index and every registered model's list open (200); no add page does
    (403). Returns the models checked, so a test can tell the registry was not empty."""
    from django.contrib import admin
    from django.urls import reverse

    assert client.get(index_url).status_code == 200
    checked = []
    for model in admin.site._registry:
        route = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        changelist = client.get(reverse(f"{route}_changelist"))
        add = client.get(reverse(f"{route}_add"))
        assert changelist.status_code == 200, model._meta.label
        assert add.status_code == 403, model._meta.label
        checked.append(model._meta.label)
    return sorted(checked)


def grant(client: Any, permission: str) -> None:
    """Give the single sign-on staff member of `client` (staff_admin_client) `permission`
    ("orders.cancel_order") on this service's row standing for them, as a local superuser
    would in the admin; the row is made by their first visit if need be."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    app_label, _, codename = permission.partition(".")
    user, _ = get_user_model().objects.get_or_create(
        username=client.user_id, defaults={"email": client.email, "is_staff": True}
    )
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )


def run_staff_action(client: Any, changelist: str, action: str, rows: list[Any]) -> Any:
    """POST an admin action on `rows` from the changelist, following its redirect; the
    answer's context has the messages it left."""
    return client.post(
        changelist,
        {"action": action, "_selected_action": [str(row.pk) for row in rows], "index": 0},
        follow=True,
    )


def shown_messages(response: Any) -> list[tuple[str, str]]:
    """(level tag, text) of each message an admin page showed."""
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def offered_actions(client: Any, changelist: str) -> list[str]:
    """The actions the changelist offers its visitor (Django's own included)."""
    response = client.get(changelist)
    assert response.status_code == 200
    form = response.context["action_form"]
    if form is None:
        return []
    return [name for name, _ in form.fields["action"].choices if name]
