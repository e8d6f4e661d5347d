"""Just enough of Kubernetes' protobuf encoding to read the request bodies clients send.

Owns decoding of ``application/vnd.kubernetes.protobuf`` bodies (the ``k8s\\0`` envelope
around ``runtime.Unknown``) into the JSON shape of the few kinds newer ``kubectl``
clients may send as protobuf: SelfSubjectAccessReview, SelfSubjectRulesReview,
SelfSubjectReview, Eviction and DeleteOptions. Responses are JSON (clients accept it),
except the minimal ``/openapi/v2`` document, which clients only take as protobuf.
Pure; must not do I/O.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"

Json = dict[str, Any]


class ProtobufError(ValueError):
    """The body is not a protobuf message we can read."""


# field number -> (json name, type); type is "string", "bool", "int", "bytes", a message
# schema name, "map" (map<string,string>), and a trailing "[]" marks a repeated field.
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        14: ("finalizers", "string[]"),
    },
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSARSpec")},
    "SSARSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSRRSpec")},
    "SSRRSpec": {1: ("namespace", "string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", "Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "string[]"),
    },
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "MapEntry": {1: ("key", "string"), 2: ("value", "string")},
    # gnostic openapi_v2.Document (only what a minimal document needs)
    "OpenAPIv2Document": {
        1: ("swagger", "string"),
        2: ("info", "OpenAPIv2Info"),
        8: ("paths", "Empty"),
        9: ("definitions", "Empty"),
    },
    "OpenAPIv2Info": {1: ("title", "string"), 2: ("version", "string")},
    "Empty": {},
}

KIND_SCHEMAS = {
    "SelfSubjectAccessReview": "SelfSubjectAccessReview",
    "SelfSubjectRulesReview": "SelfSubjectRulesReview",
    "SelfSubjectReview": "SelfSubjectReview",
    "Eviction": "Eviction",
    "DeleteOptions": "DeleteOptions",
}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if i >= len(data):
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Raw wire fields: (field number, int for varints/fixed, bytes for length-delimited)."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(data, i)
            out.append((num, v))
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ProtobufError("truncated field")
            out.append((num, data[i : i + n]))
            i += n
        elif wire == 1:
            out.append((num, int.from_bytes(data[i : i + 8], "little")))
            i += 8
        elif wire == 5:
            out.append((num, int.from_bytes(data[i : i + 4], "little")))
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_message(data: bytes, schema: str) -> Json:
    spec = SCHEMAS[schema]
    out: Json = {}
    for num, val in fields(data):
        if num not in spec:
            continue
        name, typ = spec[num]
        repeated = typ.endswith("[]")
        base = typ[:-2] if repeated else typ
        value: Any
        if base == "string":
            if not isinstance(val, bytes):
                raise ProtobufError(f"{schema}.{name}: expected bytes")
            value = val.decode("utf-8")
        elif base == "bytes":
            value = val
        elif base == "bool":
            value = bool(val)
        elif base == "int":
            if not isinstance(val, int):
                raise ProtobufError(f"{schema}.{name}: expected a number")
            value = _signed(val)
        elif base == "map":
            if not isinstance(val, bytes):
                raise ProtobufError(f"{schema}.{name}: expected a map entry")
            entry = decode_message(val, "MapEntry")
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
            continue
        else:
            if not isinstance(val, bytes):
                raise ProtobufError(f"{schema}.{name}: expected a message")
            value = decode_message(val, base)
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def decode_object(body: bytes) -> Json:
    """Decode a ``k8s\\0``-enveloped object into its JSON form (kind/apiVersion included)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    unknown = decode_message(body[len(MAGIC) :], "Unknown")
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    schema = KIND_SCHEMAS.get(kind)
    if schema is None:
        raise ProtobufError(f"cannot decode protobuf for kind {kind!r}")
    obj = decode_message(unknown.get("raw", b""), schema)
    return {"kind": kind, "apiVersion": tm.get("apiVersion", ""), **obj}


# --------------------------------------------------------------------------- encoding (tests)


def _enc_varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_message(obj: Json, schema: str) -> bytes:
    """The inverse of :func:`decode_message` (used to build test bodies)."""
    spec = SCHEMAS[schema]
    out = bytearray()
    for num in sorted(spec):
        name, typ = spec[num]
        if name not in obj:
            continue
        repeated = typ.endswith("[]")
        base = typ[:-2] if repeated else typ
        values = obj[name] if repeated else [obj[name]]
        if base == "map":
            values = [{"key": k, "value": v} for k, v in sorted(obj[name].items())]
            base = "MapEntry"
        for v in values:
            if base in ("int", "bool"):
                out += _enc_varint(num << 3) + _enc_varint(int(v))
                continue
            if base == "string":
                payload = str(v).encode()
            elif base == "bytes":
                payload = bytes(v)
            else:
                payload = encode_message(v, base)
            out += _enc_varint(num << 3 | 2) + _enc_varint(len(payload)) + payload
    return bytes(out)


def openapi_v2_document(version: str) -> bytes:
    """A minimal (no definitions) OpenAPI v2 document in gnostic's protobuf encoding."""
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": {},
        "definitions": {},
    }
    return encode_message(doc, "OpenAPIv2Document")


def encode_object(obj: Json) -> bytes:
    kind = obj["kind"]
    raw = encode_message(obj, KIND_SCHEMAS[kind])
    unknown = {"typeMeta": {"apiVersion": obj.get("apiVersion", ""), "kind": kind}, "raw": raw}
    return MAGIC + encode_message(unknown, "Unknown")
