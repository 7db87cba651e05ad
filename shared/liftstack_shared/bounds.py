"""The bounds of what liftstack accepts from the outside, in one place.

The webhook gateway parses untrusted JSON against these bounds and answers 400 with
a named code when something is outside them; the pydantic message contracts enforce
the same bounds (the `Annotated` types below), so a producer bug can't get past them
either. Everything inside the bounds is storable as it is: ints fit BSON's int64,
strings are valid UTF-8 without NULs, timestamps fit a BSON datetime, nesting stays
far below MongoDB's limit (and Python's recursion limit).

Documented limits (the ingest README repeats them):

| what | bound |
|---|---|
| integers anywhere in a payload | 64-bit signed (-2**63 .. 2**63-1) |
| floats | finite (no NaN / Infinity / 1e400) |
| nesting of objects and arrays | 32 levels |
| any string value | 16,384 characters |
| any object key | 256 characters, not empty |
| keys + array items in one payload | 10,000 |
| any string or key | no NUL, no lone UTF-16 surrogate |
| timestamps | 1970-01-01 .. 2100-01-01 UTC |
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 32
MAX_STRING_LENGTH = 16_384
MAX_KEY_LENGTH = 256
MAX_NODES = 10_000
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(2100, 1, 1, tzinfo=UTC)

# Lengths of the fields liftstack extracts and stores.
MAX_EMAIL_LENGTH = 320  # RFC 5321: 64 local + @ + 255 domain
MAX_USER_ID_LENGTH = 512
MAX_EVENT_NAME_LENGTH = 128
MAX_MESSAGE_ID_LENGTH = 512
MAX_URL_LENGTH = 8_192

# A NUL or a UTF-16 surrogate code point (only reachable as a lone "\udXXX" escape in
# JSON; valid UTF-8 can't encode one). BSON keys are NUL-terminated and BSON strings
# must be valid UTF-8, so either makes a document unstorable.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Brackets, and JSON strings so brackets inside them aren't counted as nesting. An
# unterminated string runs to the end (`"?`), which keeps the scan linear.
_DEPTH_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]', re.DOTALL)
_UTF8_BOM = b"\xef\xbb\xbf"
# Every JSON string token, with the colon after it when it is an object key.
# (The unrolled `[^"\\]*(?:\\.[^"\\]*)*` form: runs of plain characters at once.)
_STRING_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.DOTALL)


class OutOfBounds(ValueError):
    """A value outside liftstack's bounds; `code` names the bound for a 400 answer.
    A ValueError, so pydantic validators turn it into a ValidationError."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# ------------------------------------------------------------------ scalar checks


def check_text(value: str, what: str = "string") -> str:
    """`value`, unless it holds a NUL or a lone surrogate."""
    # ASCII text can hold no surrogate: then only the NUL needs looking for.
    if "\x00" in value if value.isascii() else _BAD_CHARS.search(value):
        raise OutOfBounds("invalid_string", f"A {what} contains a NUL or an invalid Unicode character.")
    return value


def check_int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise OutOfBounds("number_out_of_range", "An integer is outside the 64-bit range.")
    return value


def check_timestamp(value: datetime) -> datetime:
    """Aware (naive means UTC) and within TIMESTAMP_MIN..TIMESTAMP_MAX."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not TIMESTAMP_MIN <= value < TIMESTAMP_MAX:
        raise OutOfBounds(
            "timestamp_out_of_range",
            f"A timestamp is outside {TIMESTAMP_MIN:%Y-%m-%d}..{TIMESTAMP_MAX:%Y-%m-%d}.",
        )
    return value


def check_json_tree(value: Any) -> Any:
    """`value` if it is JSON data within every bound above, else OutOfBounds.
    Iterative (an explicit stack), so no depth can exhaust Python's recursion."""
    _walk(value)
    return value


def _walk(value: Any) -> tuple[int, bool]:
    """check_json_tree's walk; returns (object keys seen, whether a float was seen)
    for the fast parser's cross-checks."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = keys = 0
    floats = False
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise OutOfBounds("too_deep", f"JSON is nested deeper than {MAX_DEPTH} levels.")
            nodes += len(item)
            if nodes > MAX_NODES:
                raise OutOfBounds("too_many_items", f"JSON has more than {MAX_NODES} keys and items.")
            if isinstance(item, dict):
                keys += len(item)
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise OutOfBounds("invalid_key", "Object keys must be strings.")
                    _check_key(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if len(item) > MAX_STRING_LENGTH:
                raise OutOfBounds("string_too_long", f"A string is over {MAX_STRING_LENGTH} characters.")
            check_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            check_int64(item)
        elif isinstance(item, float):
            floats = True
            if not math.isfinite(item):
                raise OutOfBounds("number_out_of_range", "A number is not finite.")
        else:
            raise OutOfBounds("invalid_value", f"{type(item).__name__} is not a JSON value.")
    return keys, floats


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise OutOfBounds("invalid_key", f"Object keys must have 1 to {MAX_KEY_LENGTH} characters.")
    check_text(key, "key")


# ------------------------------------------------------------------ parsing


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Untrusted bytes -> a JSON object within every bound, else OutOfBounds with
    one of: invalid_encoding, invalid_json, too_deep, duplicate_key,
    number_out_of_range, invalid_payload (not an object), and the codes of
    `check_json_tree`."""
    fast = _parse_fast(body)
    if fast is not None:
        return fast
    data = loads_json(body)
    if not isinstance(data, dict):
        raise OutOfBounds("invalid_payload", "Request body must be one JSON object.")
    check_json_tree(data)
    return data


def _parse_fast(body: bytes) -> dict[str, Any] | None:
    """The common case at C speed: orjson parses, then the same walk as
    check_json_tree. orjson alone is not exact (it keeps the last of duplicate keys
    and turns integers past 64 bits into floats), so the answer counts only when the
    text has as many keys as the parsed objects and no number became a float. None
    whenever anything is off: the exact parser then decides, with its own error."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        keys, floats = _walk(data)
    except OutOfBounds:
        return None
    if floats:
        return None
    # Valid JSON (orjson said so): every string token is matched whole, and a key
    # is a string followed by a colon.
    tokens = _STRING_TOKENS.findall(body)
    if len(tokens) - tokens.count(b"") != keys:
        return None
    return data


def loads_json(body: bytes) -> Any:
    """Any JSON value, parsed safely: strict UTF-8 (a leading BOM is allowed),
    nesting up to MAX_DEPTH (measured before the parser sees the text, since
    Python's json itself recurses), 64-bit integers, finite floats, no duplicate
    keys. The lighter check for API bodies whose models bound the rest;
    OutOfBounds with invalid_encoding, invalid_json, too_deep, duplicate_key or
    number_out_of_range otherwise."""
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        # Strict UTF-8: the stdlib would also guess UTF-16/32 and let encoded
        # surrogates through ('surrogatepass').
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OutOfBounds("invalid_encoding", "Request body is not UTF-8.") from None
    _check_depth(body)
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_unique_keys,
        )
    except OutOfBounds:
        raise
    except (ValueError, RecursionError):
        raise OutOfBounds("invalid_json", "Request body is not valid JSON.") from None
    _check_strings(data)
    return data


def _check_strings(value: Any) -> None:
    """No lone surrogate in any key or string, and no NUL in any key: BSON can't
    store either. (A NUL inside a value is storable; the API's models decide.)"""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATES.search(item):
                raise OutOfBounds("invalid_string", f"{where or 'body'}: not valid Unicode.", where or None)
        elif isinstance(item, dict):
            for key, child in item.items():
                if _BAD_CHARS.search(key):
                    raise OutOfBounds(
                        "invalid_key",
                        f"{where or 'body'}: a key holds a NUL or invalid Unicode.",
                        where or None,
                    )
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}" if where else str(i)) for i, child in enumerate(item))


def _check_depth(body: bytes) -> None:
    depth = 0
    for match in _DEPTH_TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise OutOfBounds("too_deep", f"JSON is nested deeper than {MAX_DEPTH} levels.")
        elif token in (b"]", b"}"):
            depth -= 1


def _parse_int(text: str) -> int:
    # Checked before int(): past 4,300 digits int() itself raises, and a huge
    # literal costs quadratic time to convert.
    if len(text.lstrip("-")) > 19:
        raise OutOfBounds("number_out_of_range", "An integer is outside the 64-bit range.")
    return check_int64(int(text))


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise OutOfBounds("number_out_of_range", "A number is not finite.")
    return value


def _refuse_constant(name: str) -> Any:
    raise OutOfBounds("invalid_json", f"{name} is not JSON.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Ambiguous: another reader of the same bytes may take the other value.
            raise OutOfBounds("duplicate_key", "An object has the same key twice.")
        result[key] = value
    return result


# ------------------------------------------------------------------ contract types


def _bounded_text(max_length: int) -> Any:
    return Annotated[str, Field(min_length=1, max_length=max_length), AfterValidator(check_text)]


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Email = _bounded_text(MAX_EMAIL_LENGTH)
UserId = _bounded_text(MAX_USER_ID_LENGTH)
EventName = _bounded_text(MAX_EVENT_NAME_LENGTH)
MessageId = _bounded_text(MAX_MESSAGE_ID_LENGTH)
Url = _bounded_text(MAX_URL_LENGTH)
Timestamp = Annotated[datetime, AfterValidator(check_timestamp)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_tree)]
