"""The API's error answer, one shape on every route: {"error": message}, for people, and
for some a few fields more."""
from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class Error(BaseModel):
    error: str = Field(description="what went wrong, for people")


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status, headers=headers)
