"""Domain errors shared by the ingress, the Store and the deployments.

They cross Ray process boundaries (Ray re-raises them wrapped in a class that is still an
instance of the original), so every one keeps its constructor arguments in ``args``.
"""

from __future__ import annotations


class APIError(Exception):
    """An error with an HTTP status and a title that clients of the Enfugue API know."""

    status: int = 500
    title: str = "InternalServerError"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequestError(APIError):
    status = 400
    title = "BadRequestError"


class AuthenticationError(APIError):
    status = 401
    title = "AuthenticationError"


class AccessDeniedError(APIError):
    """Enfugue calls this PermissionError; the Python builtin of that name is not ours to raise."""

    status = 403
    title = "PermissionError"


class NotFoundError(APIError):
    status = 404
    title = "NotFoundError"


class StateConflictError(APIError):
    status = 409
    title = "StateConflictError"


class PayloadTooLargeError(APIError):
    status = 413
    title = "PayloadTooLargeError"


class TooManyRequestsError(APIError):
    status = 429
    title = "TooManyRequestsError"

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.args = (detail, retry_after)
        self.retry_after = retry_after


class InvocationCancelled(Exception):
    """Raised inside a model deployment when the Store says the invocation was cancelled."""
