"""How many rows a page holds unless asked: apart from the modules that page, so that the
CLI can show them as its options' defaults without importing events and projections."""
from __future__ import annotations

HISTORY_PAGE = 20       # deployments `sluice deployments` and the API's history show
