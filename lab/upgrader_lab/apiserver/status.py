"""``metav1.Status`` bodies and the error type that carries them.

Owns the exact shapes and messages of the real kube-apiserver's failure responses
(NotFound, AlreadyExists, Conflict, Invalid, Forbidden, TooManyRequests, ...), so every
module raises the same thing the real server would send. Must not: do I/O.
"""

from __future__ import annotations

from typing import Any, ClassVar

from upgrader_lab.apiserver.resources import ResourceType

Json = dict[str, Any]


def status_body(
    code: int,
    message: str | None,
    reason: str | None,
    details: Json | None = None,
    *,
    success: bool = False,
) -> Json:
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
    }
    if message is not None:
        body["message"] = message
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """A failed request; ``body`` is the Status object sent with HTTP ``code``."""

    def __init__(self, code: int, body: Json, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("message", f"HTTP {code}"))
        self.code = code
        self.body = body
        self.headers = headers or {}


def _details(rt: ResourceType | None, name: str | None) -> Json:
    d: Json = {}
    if name:
        d["name"] = name
    if rt is not None:
        if rt.group:
            d["group"] = rt.group
        d["kind"] = rt.plural
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    msg = f'{rt.qualified} "{name}" not found'
    return ApiError(404, status_body(404, msg, "NotFound", _details(rt, name)))


def path_not_found() -> ApiError:
    msg = "the server could not find the requested resource"
    return ApiError(404, status_body(404, msg, "NotFound", {}))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    msg = f'{rt.qualified} "{name}" already exists'
    return ApiError(409, status_body(409, msg, "AlreadyExists", _details(rt, name)))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    msg = f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}'
    return ApiError(409, status_body(409, msg, "Conflict", _details(rt, name)))


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def stale(rt: ResourceType, name: str) -> ApiError:
    return conflict(rt, name, STALE)


class FieldError:
    """One ``field.Error`` of the real validation: type + field path + detail."""

    _REASONS: ClassVar[dict[str, str]] = {
        "Required value": "FieldValueRequired",
        "Invalid value": "FieldValueInvalid",
        "Unsupported value": "FieldValueNotSupported",
        "Forbidden": "FieldValueForbidden",
        "Duplicate value": "FieldValueDuplicate",
    }

    def __init__(self, kind: str, field: str, detail: str = "", value: Any = None) -> None:
        self.kind = kind  # "Required value", "Invalid value", ...
        self.field = field
        self.detail = detail
        self.value = value

    def message(self) -> str:
        if self.kind == "Invalid value":
            v = f'"{self.value}"' if isinstance(self.value, str) else _go_repr(self.value)
            return f"{self.kind}: {v}: {self.detail}" if self.detail else f"{self.kind}: {v}"
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def cause(self) -> Json:
        return {
            "reason": self._REASONS.get(self.kind, "FieldValueInvalid"),
            "message": self.message(),
            "field": self.field,
        }


def _go_repr(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def invalid(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    parts = [f"{e.field}: {e.message()}" for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    msg = f'{rt.qualified_kind} "{name}" is invalid: {joined}'
    details: Json = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, status_body(422, msg, "Invalid", details))


def bad_request(message: str) -> ApiError:
    return ApiError(400, status_body(400, message, "BadRequest"))


def method_not_allowed() -> ApiError:
    msg = "the server does not allow this method on the requested resource"
    return ApiError(405, status_body(405, msg, "MethodNotAllowed", {}))


PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def unsupported_media_type(content_type: str, accepted: tuple[str, ...]) -> ApiError:
    msg = (
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}"
    )
    del content_type
    return ApiError(415, status_body(415, msg, "UnsupportedMediaType"))


def not_acceptable(accepted: tuple[str, ...]) -> ApiError:
    msg = f"only the following media types are accepted: {', '.join(accepted)}"
    return ApiError(406, status_body(406, msg, "NotAcceptable"))


def forbidden_message(
    user: str, verb: str, rt: ResourceType, sub: str, name: str, namespace: str
) -> str:
    resource = f"{rt.plural}/{sub}" if sub else rt.plural
    what = f'{rt.plural} "{name}"' if name else rt.plural
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{rt.group}" {scope}'
    )


def forbidden(
    user: str, verb: str, rt: ResourceType, sub: str, name: str, namespace: str
) -> ApiError:
    msg = forbidden_message(user, verb, rt, sub, name, namespace)
    details = _details(rt, name)
    return ApiError(403, status_body(403, msg, "Forbidden", details))


def unauthorized() -> ApiError:
    return ApiError(401, status_body(401, "Unauthorized", "Unauthorized"))


def too_many_requests(message: str, causes: list[Json], retry_after: int = 0) -> ApiError:
    details: Json = {"causes": causes}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return ApiError(429, status_body(429, message, "TooManyRequests", details), headers)


def internal(message: str) -> ApiError:
    msg = f"Internal error occurred: {message}"
    return ApiError(500, status_body(500, msg, "InternalError", {"causes": [{"message": message}]}))


_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def generic(code: int, message: str) -> ApiError:
    """A Status for an arbitrary code (used by injected faults)."""
    return ApiError(code, status_body(code, message, _REASON_BY_CODE.get(code, "Unknown")))
