"""Protocol v1 of the stimage server: message layout, error codes and header checks.

A message is a ZeroMQ multipart message: one UTF-8 JSON header frame, then zero or more
binary frames that the header refers to by index (0 = the first frame after the header).
The JSON Schema of every header ships beside this module (``protocol_v1.schema.json``);
``docs/protocol.md`` is the human description and ``tests/fixtures/protocol`` holds one
canonical example of each message kind (the Java client is tested against them too).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any, Final

from stimage.errors import StimageError

__all__ = [
    "KINDS",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ProtocolError",
    "ServerError",
    "decode_header",
    "encode_header",
    "error_reply",
    "heartbeat_reply",
    "json_safe",
    "load_schema",
    "progress_reply",
    "request_header",
    "result_reply",
    "validate",
]

#: The protocol this package speaks.
PROTOCOL_VERSION: Final = 1
#: Reply kinds: any number of progress and heartbeat replies, then exactly one result or error.
KINDS: Final = ("progress", "heartbeat", "result", "error")
#: Longest error message sent (longer ones are cut; a hostile input never echoes in full).
_MAX_MESSAGE = 500


class ErrorCode:
    """Stable error codes of error replies (strings; clients switch on them)."""

    BAD_REQUEST: Final = "bad_request"
    UNSUPPORTED_PROTOCOL: Final = "unsupported_protocol"
    UNKNOWN_OP: Final = "unknown_op"
    UNKNOWN_MODEL: Final = "unknown_model"
    UNKNOWN_GENE: Final = "unknown_gene"
    BAD_IMAGE: Final = "bad_image"
    WRONG_SCALE: Final = "wrong_scale"
    NO_TISSUE: Final = "no_tissue"
    TOO_LARGE: Final = "too_large"
    BUSY: Final = "busy"
    DEADLINE: Final = "deadline"
    CANCELLED: Final = "cancelled"
    FORBIDDEN_PATH: Final = "forbidden_path"
    NOT_FOUND: Final = "not_found"
    UNAVAILABLE: Final = "unavailable"
    NO_NUCLEI: Final = "no_nuclei"
    INTERNAL: Final = "internal"
    #: Raised by clients only, never sent: the server stopped answering (restart, crash).
    DISCONNECTED: Final = "disconnected"

    @classmethod
    def all(cls) -> tuple[str, ...]:
        """Every code, in declaration order."""
        return tuple(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


class ProtocolError(StimageError, ValueError):
    """A request the server refuses; becomes an error reply with ``code`` and ``message``.

    Args:
        code: One of :class:`ErrorCode`.
        message: What was wrong and how to fix it.
        details: Optional machine-readable extras (JSON values).
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class ServerError(StimageError, RuntimeError):
    """An error reply received by a client (or ``disconnected`` when the server went away).

    Attributes:
        code: One of :class:`ErrorCode`.
        message: The server's explanation.
        details: Machine-readable extras, if any.
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


# --------------------------------------------------------------------------- encoding


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"the number {clip(text, 40)} is too large (numbers must be finite)")
    return v


#: Largest integer magnitude accepted in a header (64-bit, as Java reads them).
_MAX_INT = 2**63 - 1


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(v := int(text)) > _MAX_INT:
        raise ValueError(f"the integer {clip(text, 40)} does not fit in 64 bits")
    return v


#: A JSON escape of a UTF-16 surrogate (the only way a lone one gets into a decoded header).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _lone_surrogate(obj: Any, budget: list[int]) -> bool:
    """Whether any string (key or value) of a decoded header holds a lone surrogate."""
    stack = [obj]
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        o = stack.pop()
        if isinstance(o, str):
            try:
                o.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


def encode_header(header: dict[str, Any]) -> bytes:
    """UTF-8 JSON of a header; non-finite numbers are refused (strict JSON for Java).

    A string that cannot be UTF-8 (a lone surrogate, from a caller's bug) is written with
    the replacement character, never raised: a reply must always go out.
    """
    text = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")


def decode_header(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Parse a header frame.

    Raises:
        ProtocolError: Too large (``too_large``), not UTF-8 JSON, not an object, NaN or
            Infinity, or nested too deeply (``bad_request``).
    """
    if len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the header frame has {len(data)} bytes; this server accepts at most {max_bytes}; "
            "send images as binary frames, not inside the JSON",
        )
    try:
        obj = json.loads(
            data.decode("utf-8"),
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except UnicodeDecodeError as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"the header is not UTF-8 ({e.reason})") from e
    except RecursionError as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the header JSON is nested too deeply") from e
    except ValueError as e:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"the first frame must be a JSON header; it does not parse ({clip(str(e))})",
        ) from e
    if not isinstance(obj, dict):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"the header must be a JSON object; got a JSON {type(obj).__name__}",
        )
    # The walk is bounded by the header's size: every node took at least two bytes.
    if _SURROGATE_ESCAPE.search(data) and _lone_surrogate(obj, [len(data)]):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "the header holds a lone UTF-16 surrogate escape (such as \\ud800), which is not "
            "text; send valid Unicode (surrogates only in pairs)",
        )
    return obj


def clip(text: str, n: int = _MAX_MESSAGE) -> str:
    """``text`` cut to ``n`` characters."""
    return text if len(text) <= n else text[: n - 3] + "..."


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------- messages


def request_header(
    request_id: str, op: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A request header."""
    return {"protocol": PROTOCOL_VERSION, "id": request_id, "op": op, "params": params or {}}


def result_reply(request_id: str, op: str, result: dict[str, Any]) -> dict[str, Any]:
    """The one final successful reply of a request."""
    return {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "kind": "result",
        "op": op,
        "result": result,
    }


def error_reply(
    request_id: str | None, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one final error reply of a request (``id`` is None when it could not be read)."""
    out: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "kind": "error",
        "code": code,
        "message": clip(message),
    }
    if details:
        out["details"] = details
    return out


def progress_reply(request_id: str, stage: str, done: int, total: int) -> dict[str, Any]:
    """A progress event: ``done`` of ``total`` units of ``stage``."""
    return {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "kind": "progress",
        "stage": stage,
        "done": int(done),
        "total": int(total),
    }


def heartbeat_reply(request_id: str) -> dict[str, Any]:
    """A heartbeat: the request is alive and being worked on."""
    return {"protocol": PROTOCOL_VERSION, "id": request_id, "kind": "heartbeat"}


# --------------------------------------------------------------------------- schema


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of protocol v1 headers (``$defs`` hold one schema per message)."""
    text = resources.files("stimage.server").joinpath("protocol_v1.schema.json").read_text()
    return dict(json.loads(text))


@cache
def _validator(name: str) -> Any:
    import jsonschema

    root = load_schema()
    if name not in root["$defs"]:
        raise KeyError(f"no schema named {name!r} in protocol_v1.schema.json")
    schema = {k: v for k, v in root.items() if k in ("$schema", "$defs")}
    schema["$ref"] = f"#/$defs/{name}"
    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, {"uniqueItems": _unique_items})
    return cls(schema)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
    """``uniqueItems`` in linear time (jsonschema's own is quadratic on mixed-type arrays).

    Items are compared as JSON compares them; arrays of anything but strings and numbers
    (never sent by a valid request) are only checked when short.
    """
    import jsonschema

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[tuple[str, Any]] = set()
    for item in instance:
        if isinstance(item, str):
            key: tuple[str, Any] = ("s", item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            key = ("n", item)
        elif len(instance) <= 64:
            yield from jsonschema._keywords.uniqueItems(validator, unique, instance, schema)
            return
        else:
            continue  # the items' own type check reports it
        if key in seen:
            yield jsonschema.ValidationError(f"{clip(repr(instance), 80)} has non-unique elements")
            return
        seen.add(key)


def validate(instance: Any, name: str, where: str = "") -> None:
    """Check a header (or a part of it) against a schema definition.

    Args:
        instance: The JSON value.
        name: A ``$defs`` entry of the protocol schema (``request``, ``params_predict`` ...).
        where: Prefix of the path in messages (``"params"``).

    Raises:
        ProtocolError: ``bad_request`` naming the first offending field.
    """
    import jsonschema

    # The first few errors are enough for a message (a hostile array may hold 20,000).
    errors = list(itertools.islice(_validator(name).iter_errors(instance), 32))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors)
    path = ".".join([where] * bool(where) + [str(p) for p in err.absolute_path])
    msg = err.message
    if err.validator == "additionalProperties":
        msg = msg.replace("were unexpected", "are not known").replace(
            "was unexpected", "is not known"
        )
    raise ProtocolError(
        ErrorCode.BAD_REQUEST, clip(f"{path or 'header'}: {clip(msg, 300)}; see docs/protocol.md")
    )
