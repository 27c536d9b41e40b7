"""Domain errors cross deployment boundaries as values and are raised again by the caller."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.errors import NotFoundError
from serve_app.remote import Remote, errors_as_values
from tests.local_handles import LocalHandle


class Service:
    def find(self, key: str) -> str:
        if key != "known":
            raise NotFoundError(f"{key} not found.")
        return key.upper()

    def crash(self) -> None:
        raise RuntimeError("a bug")


def test_answers_are_values_and_bugs_still_raise() -> None:
    service = errors_as_values(Service)()
    assert service.find("known") == "KNOWN"
    answer = service.find("other")
    assert isinstance(answer, NotFoundError) and answer.detail == "other not found."
    with pytest.raises(RuntimeError):
        service.crash()


def test_remote_raises_answered_errors() -> None:
    remote = Remote(LocalHandle(errors_as_values(Service)()))
    assert asyncio.run(remote.find("known")) == "KNOWN"
    with pytest.raises(NotFoundError, match="other not found"):
        asyncio.run(remote.find("other"))
