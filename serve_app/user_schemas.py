"""Bodies of the login and user routes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator
from pydantic_core import PydanticCustomError

from storage.passwords import MAX_PASSWORD_LENGTH

Username = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.@+-]{1,64}$")]
Password = Annotated[StrictStr, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
Name = Annotated[StrictStr, Field(max_length=128)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[StrictStr, Field(max_length=64)]
    password: Annotated[StrictStr, Field(max_length=MAX_PASSWORD_LENGTH)]


def _passwords_match(data: Any) -> None:
    if data.new_password is not None and data.new_password != data.repeat_password:
        raise PydanticCustomError("repeat_password", "repeat_password: does not match new_password")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    new_password: Password
    repeat_password: StrictStr
    first_name: Name | None = None
    last_name: Name | None = None
    admin: StrictBool = False

    @model_validator(mode="after")
    def _repeat(self) -> UserCreate:
        _passwords_match(self)
        return self


class UserUpdate(BaseModel):
    """PATCH /api/users/{username}: only the fields given change. Users changing their own
    password give ``current_password`` too."""

    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[StrictStr, Field(max_length=MAX_PASSWORD_LENGTH)] | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    admin: StrictBool | None = None
    new_password: Password | None = None
    repeat_password: StrictStr | None = None

    @model_validator(mode="after")
    def _repeat(self) -> UserUpdate:
        for name in ("admin", "new_password"):
            if getattr(self, name) is None and name in self.model_fields_set:
                raise PydanticCustomError("null", "{name}: may not be null", {"name": name})
        _passwords_match(self)
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"repeat_password", "current_password"})
