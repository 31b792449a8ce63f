"""Request rows of the recommender, validated before any work: each value's type and range, the number of
rows, and the one spelling of article ids (`data.schema.normalise_article_id`).

Kept apart from the pyfunc so that the serving guard (`serving.guard`) shares the limits without loading
the model's dependencies.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from datetime import date
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from fashionrec.data.schema import normalise_article_id
from fashionrec.weeks import week_of

MAX_K = 100
MAX_ROWS = 1000  # rows per request: a larger batch belongs to batch_score, not to a REST call
MAX_EXCLUDE = 1000  # article ids in one row's `exclude`
MAX_ID_LENGTH = 128
# A photo is at most 1 MiB once decoded from base64 (its base64 text still fits the guard's 2 MiB body, so
# an oversized photo gets this 400 naming the limit, not a bare 413) and at most 4096 x 4096 pixels (a
# small compressed file can unpack to gigabytes).
MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = ("JPEG", "PNG")
SEARCH_SIDE = 256  # photos are shrunk to at most this side before the encoder (which resizes again)
REQUEST_FIELDS = ("customer_id", "article_id", "image", "k", "exclude", "as_of")


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, field: str, row: int) -> str | None:
    if _missing(value):
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"row {row}: {field} must be a non-empty string, got {_shown(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise bad_request(f"row {row}: {field} is longer than {MAX_ID_LENGTH} characters")
    return value.strip()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _k(value: Any, row: int, default: int) -> int:
    if _missing(value):
        return default
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise bad_request(f"row {row}: k must be an integer from 1 to {MAX_K}, got {_shown(value)}")
    k = int(value)
    if not 1 <= k <= MAX_K:
        raise bad_request(f"row {row}: k must be from 1 to {MAX_K}, got {k}")
    return k


def _exclude(value: Any, row: int) -> set[str]:
    if _missing(value):
        return set()
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise bad_request(f"row {row}: exclude must be a list of article ids, got {_shown(value)}")
    ids = list(value)
    if len(ids) > MAX_EXCLUDE:
        raise bad_request(f"row {row}: exclude has {len(ids)} ids; at most {MAX_EXCLUDE}")
    if not all(isinstance(v, str) and v.strip() for v in ids):
        raise bad_request(f"row {row}: exclude must hold article ids as strings, got {_shown(ids)}")
    return {normalise_article_id(v) for v in ids}


def _week(value: Any, row: int, week: int) -> None:
    as_of = _text(value, "as_of", row)
    if as_of is None:
        return
    try:
        asked = week_of(date.fromisoformat(as_of))
    except ValueError as error:
        raise bad_request(f"row {row}: as_of must be a date YYYY-MM-DD, got {_shown(as_of)}") from error
    if asked != week:
        raise bad_request(
            f"row {row}: this model answers for the week of its snapshot (week index {week}); "
            f"as_of {as_of} is another week: register a model built for that week"
        )


def decode_photo(value: Any, row: int) -> np.ndarray | None:
    """A base64 JPEG or PNG → (h, w, 3) uint8 RGB, shrunk to at most `SEARCH_SIDE` a side; `bad_request`
    naming the problem for text that is not base64, too large, not such an image, or truncated."""
    from PIL import Image, UnidentifiedImageError

    if _missing(value):
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(
            f"row {row}: image must be a base64-encoded JPEG or PNG string, got {_shown(value)}"
        )
    if len(value) > 4 * (MAX_IMAGE_BYTES // 3 + 1) + 4:  # no need to decode to know it is too large
        raise bad_request(f"row {row}: image is larger than {MAX_IMAGE_BYTES // 1024} KiB")
    try:
        content = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad_request(f"row {row}: image is not valid base64 ({error})") from error
    if len(content) > MAX_IMAGE_BYTES:
        raise bad_request(
            f"row {row}: image is {len(content)} bytes, larger than {MAX_IMAGE_BYTES // 1024} KiB"
        )
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.format not in IMAGE_FORMATS:
                raise bad_request(f"row {row}: image must be JPEG or PNG, got {image.format}")
            if max(image.size) > MAX_IMAGE_SIDE:
                raise bad_request(
                    f"row {row}: image is {image.size[0]}x{image.size[1]} pixels; at most {MAX_IMAGE_SIDE} a side"
                )
            image.load()  # decodes the whole file: a truncated one raises here
            rgb = image.convert("RGB")
    except UnidentifiedImageError as error:
        raise bad_request(f"row {row}: image is not a JPEG or PNG image") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise bad_request(f"row {row}: image is truncated or corrupt ({error})") from error
    rgb.thumbnail((SEARCH_SIDE, SEARCH_SIDE))
    return np.asarray(rgb, dtype=np.uint8)


def parse_requests(frame: Any, default_k: int, week: int) -> list[dict[str, Any]]:
    """Validated requests, one per row of a DataFrame; raises `bad_request` naming the row and field."""
    if frame.empty:
        raise bad_request("no rows: send at least one customer_id, article_id or image")
    if len(frame) > MAX_ROWS:
        raise bad_request(f"too many rows: {len(frame)} > {MAX_ROWS} per request")
    unknown = set(frame.columns) - set(REQUEST_FIELDS)
    if unknown:
        raise bad_request(f"unknown field(s) {sorted(unknown)}: use {', '.join(REQUEST_FIELDS)}")
    requests = []
    columns = {name: frame[name].tolist() for name in frame.columns}  # cheaper than to_dict("records")
    for i in range(len(frame)):
        row = {name: values[i] for name, values in columns.items()}
        customer = _text(row.get("customer_id"), "customer_id", i)
        article = _text(row.get("article_id"), "article_id", i)
        given = [name for name, value in (("customer_id", customer), ("article_id", article)) if value]
        if not _missing(row.get("image")):
            given.append("image")
        if len(given) != 1:
            also = f" (got {' and '.join(given)})" if given else ""
            raise bad_request(f"row {i}: give exactly one of customer_id, article_id and image{also}")
        _week(row.get("as_of"), i, week)
        requests.append(
            {
                "customer_id": customer,
                "article_id": None if article is None else normalise_article_id(article),
                "image": decode_photo(row.get("image"), i),
                "k": _k(row.get("k"), i, default_k),
                "exclude": _exclude(row.get("exclude"), i),
            }
        )
    return requests
