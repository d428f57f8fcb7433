"""Test helpers shared by every service; the fixtures live in `plugin` (a pytest plugin)."""
