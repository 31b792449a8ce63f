"""A guard in front of MLflow's scoring app: every malformed request gets a 4xx, none a 5xx, and no request
can hold a worker up.

MLflow's app (what `mlflow models serve` runs) answers 500 to a request without `Content-Type` and to a
deeply nested JSON body (RecursionError), echoes a whole invalid body back in its error message, reads
bodies of any size, and silently drops request fields its signature does not name. The guard checks, before
the model is reached:
- the headers' size (`MAX_HEADER_BYTES`, 431: the HTTP parser itself accepts any size);
- the body's size (`MAX_BODY_BYTES`, 413 from `Content-Length` before reading, or while reading);
- the content type (415 when missing or not JSON/CSV/Parquet);
- JSON: valid, at most `MAX_JSON_DEPTH` deep, one of MLflow's top-level fields, only the request fields the
  model knows (`REQUEST_FIELDS`), at most `MAX_ROWS` rows (400, naming the field or the limit);
- error bodies: never longer than `MAX_ERROR_BYTES` (a 10 MB request is not echoed back).
The model itself checks each value (types, ranges, ids) and the row limit again, so Databricks Model
Serving, which runs its own front server, rejects the same requests except unknown fields.

A request that passes is scored by MLflow's own handler (`scoring_server.invocations`: JSON or CSV or
Parquet to pandas, the signature's checks, the model, pandas to JSON), called directly on the event loop's
thread: the same answer and error bodies as MLflow's app, without its FastAPI routing, its timeout
middleware and the hop to a prediction thread, which took as much CPU as the handler itself (measured in
docs/journal.md, "One runtime: serving"). There is no 504 timeout: the limits above bound a request's work,
and MLflow's timeout answers 504 while the prediction goes on taking its thread anyway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fashionrec.serving.requests import MAX_ROWS, REQUEST_FIELDS

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024  # all header names and values together, as nginx's default large buffers
MAX_JSON_DEPTH = 32
MAX_ERROR_BYTES = 2048
TOP_LEVEL_FIELDS = ("dataframe_records", "dataframe_split", "instances", "inputs", "params")
JSON_TYPE = "application/json"
OTHER_TYPES = ("text/csv", "application/x-parquet")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
# (body, Content-Type header) -> (status, body, media type): MLflow's handling of one /invocations request.
Scorer = Callable[[bytes, str], tuple[int, str, str]]


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _depth(body: bytes) -> int:
    """Deepest nesting of JSON arrays/objects, counted outside strings (bytes-level, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _check_rows(payload: dict[str, Any]) -> None:
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        if not isinstance(records, list):
            raise Rejected(400, "dataframe_records must be a list of objects")
        if len(records) > MAX_ROWS:
            raise Rejected(400, f"too many rows: {len(records)} > {MAX_ROWS} per request")
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise Rejected(400, f"dataframe_records[{i}] must be an object")
            unknown = sorted(set(record) - set(REQUEST_FIELDS))
            if unknown:
                raise Rejected(400, f"row {i}: unknown field(s) {unknown}: use {', '.join(REQUEST_FIELDS)}")
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns", []), list):
            raise Rejected(400, "dataframe_split must be an object with 'columns' and 'data'")
        unknown = sorted({str(c) for c in split.get("columns", [])} - set(REQUEST_FIELDS))
        if unknown:
            raise Rejected(400, f"unknown field(s) {unknown}: use {', '.join(REQUEST_FIELDS)}")
        data = split.get("data", [])
        if not isinstance(data, list):
            raise Rejected(400, "dataframe_split.data must be a list of rows")
        if len(data) > MAX_ROWS:
            raise Rejected(400, f"too many rows: {len(data)} > {MAX_ROWS} per request")


def check_json_body(body: bytes) -> None:
    """Raise Rejected for a JSON body the model must not see (see the module's docstring)."""
    if _depth(body) > MAX_JSON_DEPTH:
        raise Rejected(400, f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise Rejected(400, f"the body is not valid UTF-8 JSON ({error.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise Rejected(400, f"the body must be a JSON object with one of {', '.join(TOP_LEVEL_FIELDS[:2])}")
    unknown = sorted(set(payload) - set(TOP_LEVEL_FIELDS))
    if unknown:
        raise Rejected(400, f"unknown top-level field(s) {unknown}: use {', '.join(TOP_LEVEL_FIELDS)}")
    _check_rows(payload)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    length = _header(scope, b"content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise Rejected(400, "Content-Length is not a number")
        if int(length) > MAX_BODY_BYTES:
            raise Rejected(413, f"the body has {int(length)} bytes; the limit is {MAX_BODY_BYTES}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Rejected(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, media_type: str = JSON_TYPE) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error_code": "BAD_REQUEST", "message": message[:MAX_ERROR_BYTES]}).encode()
    await _respond(send, status, body)


def _shortened(send: Send) -> Send:
    """A `send` that cuts error bodies to MAX_ERROR_BYTES (MLflow quotes the request in its messages)."""
    state: dict[str, Any] = {}

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            state["start"], state["body"] = message, b""
            return
        if "start" not in state:
            await send(message)
            return
        state["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = state["body"]
        if len(body) > MAX_ERROR_BYTES:
            try:
                text = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                text = body[:MAX_ERROR_BYTES].decode("utf-8", "replace")
            body = json.dumps(
                {"error_code": "BAD_REQUEST", "message": text[: MAX_ERROR_BYTES - 100]}
            ).encode()
        headers = [(k, v) for k, v in state["start"].get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**state["start"], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


class RequestGuard:
    """ASGI middleware around MLflow's scoring app (see the module's docstring): a request that passes is
    scored by `score` when given, otherwise handed to the app."""

    def __init__(self, app: App, score: Scorer | None = None) -> None:
        self.app = app
        self.score = score

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope.get("headers", []))
            if size > MAX_HEADER_BYTES:
                await _answer(send, 431, f"the headers have {size} bytes; the limit is {MAX_HEADER_BYTES}")
                return
        if scope["type"] != "http" or scope.get("path") != "/invocations" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        try:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if content_type not in (JSON_TYPE, *OTHER_TYPES):
                raise Rejected(415, f"Content-Type must be {JSON_TYPE} (got {content_type or 'none'!r})")
            body = await _read_body(scope, receive)
            if content_type == JSON_TYPE:
                check_json_body(body)
        except Rejected as rejected:
            await _answer(send, rejected.status, rejected.message)
            return
        if self.score is not None:
            try:
                status, text, media_type = self.score(body, _header(scope, b"content-type") or "")
            except Exception as error:  # as above: the request's fault
                await _answer(send, 400, f"the request could not be scored ({error.__class__.__name__})")
                return
            await _respond(_shortened(send), status, text.encode(), media_type)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, _shortened(send))
        except Exception as error:  # anything MLflow did not turn into a response: the request's fault
            await _answer(send, 400, f"the request could not be scored ({error.__class__.__name__})")


def mlflow_scorer(model: Any) -> Scorer:
    """MLflow's handling of one /invocations request for a loaded pyfunc model, as its app does it
    (`scoring_server.invocations`, and an MlflowException as its status and JSON body)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    input_schema = model.metadata.get_input_schema()

    def score(body: bytes, content_type: str) -> tuple[int, str, str]:
        try:
            result = scoring_server.invocations(body, content_type, model, input_schema)
        except MlflowException as error:
            return error.get_http_status_code(), error.serialize_as_json(), JSON_TYPE
        return result.status, result.response, result.mimetype

    return score


def guarded_mlflow_app() -> RequestGuard:
    """MLflow's scoring app for the model named by its environment (see `serving.server`), guarded; the
    guard scores requests with MLflow's handler directly (see the module's docstring)."""
    import os

    from mlflow.pyfunc import scoring_server

    # What `mlflow.pyfunc.scoring_server.app` does, keeping the model for the guard's scorer.
    model = scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
    return RequestGuard(scoring_server.init(model), mlflow_scorer(model))
