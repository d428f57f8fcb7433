"""Money rules more than one service applies."""

from decimal import Decimal

# The smallest amount Stripe charges in US dollars (its minimum charge amount). A ticket
# listed for less could be reserved but never paid for: tickets_svc refuses such a price;
# orders_svc refuses to reserve, and payments_svc to charge, a ticket listed for less
# before that rule.
SMALLEST_CHARGE = Decimal("0.50")
SMALLEST_CHARGE_CENTS = int(SMALLEST_CHARGE * 100)
