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
