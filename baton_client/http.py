"""The REST API over httpx: one error type carrying the server's error shape."""

from __future__ import annotations

from typing import Any

import httpx

from baton_client.config import Profile

USER_AGENT = "baton-cli"


class ApiError(Exception):
    """A non-2xx answer (or no answer); ``str()`` is the server's message."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class Api:
    """A client of one Baton server, authenticated with an API token."""

    def __init__(self, profile: Profile, *, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=profile.url,
            headers={"Authorization": f"Bearer {profile.token}", "User-Agent": USER_AGENT},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body (``None`` for 204); ``ApiError`` for anything else."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(0, f"Cannot reach {self.http.base_url}: {error}") from error
        if response.status_code >= 400:
            try:
                error_body = response.json().get("error", {})
            except ValueError:
                error_body = {}
            message = error_body.get("message") or response.text or response.reason_phrase
            raise ApiError(response.status_code, message, error_body.get("details"))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list (follows ``next_cursor``)."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(path, cursor=cursor, **params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def job_id(self, name_or_id: str) -> str:
        """A job's id from its exact name (or the id itself)."""
        if len(name_or_id) == 36 and name_or_id.count("-") == 4:
            return name_or_id
        for job in self.pages("/api/v1/jobs", name=name_or_id, limit=200):
            if job["name"] == name_or_id:
                return str(job["id"])
        raise ApiError(404, f"No job named {name_or_id!r}")
