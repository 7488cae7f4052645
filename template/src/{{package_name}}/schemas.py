"""The items resource as it crosses the API."""

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# Ids fit a 32-bit integer column (PostgreSQL's INTEGER): a larger one cannot
# exist, and a database would refuse to look it up rather than find nothing.
MAX_ITEM_ID = 2**31 - 1
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description="The item's id")]


class ItemCreate(BaseModel):
    """What a client sends to create an item."""

    name: str = Field(min_length=1, max_length=200)


class Item(BaseModel):
    """An item, with the id the service assigned."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
