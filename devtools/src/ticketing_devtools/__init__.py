"""Developer tooling for Ticketing: set-up, the local stack, the gateway, the test runner."""
