"""The items resource as it crosses the API."""

from pydantic import BaseModel, ConfigDict, Field


class ItemCreate(BaseModel):
    """What a client sends to create an item."""

    name: str = Field(min_length=1, max_length=200)


class Item(BaseModel):
    """An item, with the id the service assigned."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
