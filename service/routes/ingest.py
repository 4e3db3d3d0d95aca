"""Ratings by CSV over HTTP (operator credential): the same validation as `recsys ingest`,
line-numbered errors, and the whole file or nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from recsys.errors import ValidationFailedError
from service.auth import OperatorDep
from service.deps import StateDep
from service.errors import BODY, OPERATOR_RESPONSES, responses
from service.schemas_ops import IngestPublic
from service.state import AppState

if TYPE_CHECKING:
    # Imported by the upload itself: ingestion reads CSVs with pandas and pyarrow, a third of
    # a serving worker's memory, which a worker that never takes an upload does not need.
    from recsys.data.ingest import Columns, IngestReport

UPLOAD_PATH = "/v1/ingest/ratings"
router = APIRouter(tags=["operator"], dependencies=[OperatorDep], responses=OPERATOR_RESPONSES)

Column = Annotated[str, Query(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]


def _ingest(state: AppState, body: bytes, columns: Columns) -> IngestReport:
    from recsys.data.ingest import ingest_csv

    # pandas reads in chunks from a file; the body is bounded by RECSYS_MAX_UPLOAD_BYTES.
    with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
        Path(tmp.name).write_bytes(body)
        try:
            return ingest_csv(
                state.engine,
                Path(tmp.name),
                columns=columns,
                scale=state.settings.rating_scale,
                chunk_rows=state.settings.ingest_chunk_rows,
                max_errors=state.settings.max_errors_shown,
            )
        except ValidationFailedError as exc:
            # The same report, named for the client: the server's temporary path is ours.
            raise ValidationFailedError("the uploaded file", exc.errors, exc.total_bad) from None


@router.post(
    UPLOAD_PATH,
    responses=responses(415, *BODY),
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def upload_ratings(
    request: Request,
    state: StateDep,
    user_col: Column = "user_id",
    item_col: Column = "item_id",
    rating_col: Column = "rating",
    timestamp_col: Column = "timestamp",
) -> IngestPublic:
    """A ratings CSV as the body (`Content-Type: text/csv`). Every row is validated; on any
    bad row nothing is written and the answer lists the first bad lines by number."""
    # Only the type a CSV upload has: a text/plain form post is what a cross-site page can
    # send without the browser asking first.
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "text/csv":
        raise HTTPException(
            415, f"send the CSV with Content-Type: text/csv (got {media_type or 'none'!r})"
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(422, "the body is empty: send the CSV file as the request body")
    rows = body.count(b"\n") - 1 + (not body.endswith(b"\n"))
    if rows > state.settings.max_upload_rows:
        raise HTTPException(
            413,
            f"{rows} rows is above the limit of {state.settings.max_upload_rows} per upload "
            "(RECSYS_MAX_UPLOAD_ROWS); split the file",
        )
    from recsys.data.ingest import Columns

    columns = Columns(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    report = await run_in_threadpool(_ingest, state, body, columns)
    return IngestPublic(
        rows=report.rows,
        new_ratings=report.new_ratings,
        ratings_before=report.ratings_before,
        ratings_after=report.ratings_after,
        seconds=report.seconds,
    )
