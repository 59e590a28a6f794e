"""Real servers the tests run locally (no mocks of what a source talks to)."""
