"""The client's forms. They carry input to the APIs, which own every rule.

    form = TicketForm(request.POST)
    try:
        request.api.post("/api/tickets", form.payload())
    except ApiError as error:
        form.show(error)      # messages next to their fields, the rest as the form's alert

No rule is repeated here (the API's exact messages are what the person sees), so
fields are optional and unstripped: what was typed goes to the API as typed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms

from storefront.api import ApiError

# Stripe's test PaymentMethods: the choice local runs and tests pay with when no
# publishable key is configured (https://docs.stripe.com/testing#cards).
TEST_CARD_SUCCEEDS = "pm_card_visa"
TEST_CARD_DECLINED = "pm_card_chargeCustomerFail"
TEST_CARDS = (
    (TEST_CARD_SUCCEEDS, "Test Visa ending 4242 (payment succeeds)"),
    (TEST_CARD_DECLINED, "Test Visa ending 0341 (card is declined)"),
)


def _text(label: str, **attrs: str) -> forms.CharField:
    return forms.CharField(
        label=label, required=False, strip=False, widget=forms.TextInput(attrs=attrs)
    )


class ApiForm(forms.Form):
    # The API's name for each field where it differs from the form's.
    api_names: dict[str, str] = {}

    def payload(self) -> dict[str, Any]:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return {self.api_names.get(name, name): data.get(name, "") for name in self.fields}

    def show(self, error: ApiError) -> None:
        by_api_name = {self.api_names.get(name, name): name for name in self.fields}
        for item in error.errors:
            field = by_api_name.get(item.get("field", ""))
            self.add_error(field, item["message"])


def _email() -> forms.CharField:
    """An account's email, as typed (the API normalises it)."""
    return forms.CharField(
        label="Email",
        required=False,
        strip=False,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


class CredentialsForm(ApiForm):
    email = _email()
    # Never rendered back: a password is not kept in the page after a failed attempt.
    password = forms.CharField(
        label="Password", required=False, strip=False, widget=forms.PasswordInput()
    )

    def __init__(self, *args: Any, new_password: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].widget.attrs["autocomplete"] = (
            "new-password" if new_password else "current-password"
        )
        if new_password:
            self.fields["password"].help_text = "8 to 128 characters."


class PasswordResetForm(ApiForm):
    email = _email()


class NewPasswordForm(ApiForm):
    # Never rendered back, as on the sign-up page.
    password = forms.CharField(
        label="New password",
        required=False,
        strip=False,
        help_text="8 to 128 characters.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
    )


class TicketForm(ApiForm):
    title = _text("Title", maxlength="200", autocomplete="off")
    # Text, not type=number: the price goes to the API exactly as typed (no float,
    # no browser rounding), and the API says what is wrong with it.
    price = _text("Price (USD)", inputmode="decimal", autocomplete="off", placeholder="45.00")


class TicketSearchForm(ApiForm):
    """The home page's search box and price filters (GET, kept in the URL)."""

    api_names = {"min_price": "minPrice", "max_price": "maxPrice"}

    q = _text("Search", type="search", placeholder="Artist, venue, event", autocomplete="off")
    min_price = _text("Min price", inputmode="decimal", placeholder="0", size="7")
    max_price = _text("Max price", inputmode="decimal", placeholder="any", size="7")

    def filters(self) -> dict[str, str]:
        """The filters given (empty ones left out), by the API's names."""
        self.is_valid()  # the fields have no rules: this only fills cleaned_data
        return {name: value for name, value in self.payload().items() if value != ""}

    def query(self) -> str:
        """The filters given, as this page's own URL names them (for its pager's links)."""
        self.is_valid()
        return urlencode({name: v for name, v in self.cleaned_data.items() if v != ""})


class PaymentForm(ApiForm):
    token = forms.CharField(required=False, strip=False, widget=forms.HiddenInput())

    def __init__(self, *args: Any, test_cards: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if test_cards:
            self.fields["token"] = forms.ChoiceField(
                label="Card",
                choices=TEST_CARDS,
                initial=TEST_CARD_SUCCEEDS,
                required=False,
                widget=forms.RadioSelect,
            )
