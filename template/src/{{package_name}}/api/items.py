"""The items resource: create, read, and list as a plain array."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ..deps import StoreDep
from ..problems import ProblemError, problem_responses
from ..schemas import Item, ItemCreate, ItemId

Limit = Annotated[int, Query(ge=1, le=1000, description="Items on one page")]
# Bounded by the databases' 64-bit integers: a larger offset is a 422, not a
# driver's overflow error.
Offset = Annotated[int, Query(ge=0, le=2**63 - 1, description="Items to skip")]

router = APIRouter(tags=["items"])
listing = APIRouter(tags=["items"])


@router.post(
    "/items",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 413, 422),
)
async def create_item(body: ItemCreate, store: StoreDep) -> Item:
    """Create an item; the service assigns its id."""
    return await store.add(body.name)


@router.get("/items/{item_id}", responses=problem_responses(404, 422))
async def read_item(item_id: ItemId, store: StoreDep) -> Item:
    """Return one item, or a 404 problem."""
    item = await store.get(item_id)
    if item is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"No item has id {item_id}.")
    return item


@listing.get("/items", responses=problem_responses(422))
async def list_items(
    store: StoreDep,
    response: Response,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Item]:
    """List items in id order; ``X-Total-Count`` says how many there are."""
    response.headers["X-Total-Count"] = str(await store.count())
    return await store.page(limit=limit, offset=offset)
