"""The catalog: read and write items, and nearest items from the learned factors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from recsys.config import MAX_SUPPORT
from recsys.store.tables import EXTERNAL_ID_LENGTH
from service import activity
from service.auth import ReaderDep, WriterDep
from service.catalog import GenreFilter
from service.deps import GenreQuery, ReadingDep, StateDep, check_batch, check_k
from service.errors import BODY, CLIENT_RESPONSES, responses
from service.schemas import NO_NUL, SimilarItem, SimilarItemsPublic
from service.schemas_catalog import ItemFields, ItemPublic, ItemsCreate, ItemsWritten
from service.state import AppState

# Each route names its check: ReaderDep, WriterDep, or ReadingDep (which does the reader's).
router = APIRouter(prefix="/v1/items", tags=["items"], responses=CLIENT_RESPONSES)

ItemPath = Annotated[str, Path(min_length=1, max_length=EXTERNAL_ID_LENGTH, pattern=NO_NUL)]


def _public(state: AppState, item_id: str) -> ItemPublic:
    title, genres = state.models.catalog.get(item_id)
    model = state.models.current
    rec = model.recommender if model else None
    row = rec.item_vocab.index(item_id) if rec else -1
    in_model = rec is not None and rec.is_known_item(item_id)
    if not in_model and item_id not in state.models.catalog.entries:
        raise HTTPException(404, f"item {item_id!r} is not in the catalog")
    return ItemPublic(
        item_id=item_id,
        title=title,
        genres=genres,
        in_model=in_model,
        new=bool(in_model and rec is not None and rec.is_new[row]),
        bias=float(rec.item_bias[row]) if rec is not None and in_model else None,
        training_ratings=int(rec.item_counts[row]) if rec is not None and row >= 0 else 0,
    )


def _row(item_id: str, fields: ItemFields) -> dict[str, object]:
    # Only the fields the client sent are written; the others keep their stored value.
    row: dict[str, object] = {"external_id": item_id}
    sent = fields.model_fields_set
    if "title" in sent:
        row["title"] = fields.title
    if "genres" in sent:
        row["genres"] = "|".join(fields.genres) if fields.genres else None
    if "metadata" in sent:
        row["metadata"] = fields.metadata
    return row


@router.get("/{item_id}", dependencies=[ReaderDep], responses=responses(404))
async def get_item(item_id: ItemPath, state: StateDep) -> ItemPublic:
    """An item with what the serving model learned about it."""
    return _public(state, item_id)


@router.put("/{item_id}", dependencies=[WriterDep], responses=responses(*BODY))
def put_item(item_id: ItemPath, body: ItemFields, state: StateDep) -> ItemPublic:
    """Add an item or update the fields given. A new item is recommended once a training run
    has learned it from ratings."""
    activity.write_items(state, [_row(item_id, body)])
    return _public(state, item_id)


@router.post(
    "", status_code=status.HTTP_201_CREATED, dependencies=[WriterDep], responses=responses(*BODY)
)
def post_items(body: ItemsCreate, state: StateDep) -> ItemsWritten:
    """Add or update many items in one transaction."""
    check_batch(len(body.items), state.settings, "items")
    ids = [i.item_id for i in body.items]
    if len(set(ids)) != len(ids):
        raise HTTPException(422, "each item_id may appear once in a batch")
    activity.write_items(state, [_row(i.item_id, i) for i in body.items])
    return ItemsWritten(written=len(ids))


@router.get("/{item_id}/similar", responses=responses(404))
async def similar_items(
    item_id: ItemPath,
    reading: ReadingDep,
    k: Annotated[int, Query(ge=1)] = 10,
    min_support: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_SUPPORT,
            description="Only items with at least this many training ratings "
            "(RECSYS_SIMILAR_MIN_SUPPORT, as `recsys inspect`).",
        ),
    ] = None,
    genre: GenreQuery = [],  # noqa: B006  # FastAPI copies defaults per request
    exclude_genre: GenreQuery = [],  # noqa: B006
) -> SimilarItemsPublic:
    """Nearest items by cosine similarity of the learned item factors, the item excluded."""
    state, model = reading.state, reading.model
    check_k(k, state.settings)
    rec = model.recommender
    wanted = GenreFilter.of(genre, exclude_genre)
    allowed = None if wanted is None else state.models.catalog.allowed(rec, wanted)
    min_support = min_support or state.settings.similar_min_support
    if not rec.is_known_item(item_id):
        known = item_id in state.models.catalog.entries
        raise HTTPException(
            404,
            f"item {item_id!r} has no learned factors yet: it is in the catalog but was not "
            "rated in the data the serving model was trained on, and has none of the genres "
            "it learned"
            if known
            else f"item {item_id!r} is not in the catalog",
        )
    catalog = state.models.catalog
    items = []
    similar = model.similar.similar(item_id, k, min_support=min_support, allowed=allowed)
    for rank, s in enumerate(similar, 1):
        title, genres = catalog.get(s.item_id)
        new = bool(rec.is_new[rec.item_vocab.index(s.item_id)])
        items.append(
            SimilarItem(
                rank=rank,
                item_id=s.item_id,
                title=title,
                genres=genres,
                similarity=s.score,
                new=new,
            )
        )
    return SimilarItemsPublic(
        item_id=item_id, title=catalog.get(item_id)[0], model_version=model.version, items=items
    )
