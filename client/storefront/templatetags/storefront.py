"""Template filters: money as people read it, and timestamps from the APIs.

{% load storefront %}
{{ ticket.price|money }}          -> $1,234.50
{{ order.expiresAt|timestamp }}   -> a datetime for |date
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django import template
from django.forms import BoundField

register = template.Library()

CENT = Decimal("0.01")


@register.filter
def money(value: object) -> str:
    """US dollars, as Stripe charges them: two decimals and thousands separators."""
    try:
        amount = Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        return ""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


@register.filter
def timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@register.filter
def clock(seconds: object) -> str:
    """Seconds as m:ss, the way the countdown shows them."""
    try:
        total = max(0, int(seconds))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ""
    return f"{total // 60}:{total % 60:02d}"


@register.simple_tag
def input_for(field: BoundField) -> str:
    """The field's widget, tied to its help and error texts for screen readers."""
    described_by = []
    attrs: dict[str, str] = {}
    if field.help_text:
        described_by.append(f"{field.auto_id}-help")
    if field.errors:
        described_by.append(f"{field.auto_id}-errors")
        attrs["aria-invalid"] = "true"
    if described_by:
        attrs["aria-describedby"] = " ".join(described_by)
    return field.as_widget(attrs=attrs)
