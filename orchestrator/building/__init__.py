"""Builds during deployment (issue 14): what to run, running it, and caching what it made."""
