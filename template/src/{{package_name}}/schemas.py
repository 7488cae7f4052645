"""The items resource as it crosses the API."""

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Ids fit a 32-bit integer column (PostgreSQL's INTEGER): a larger one cannot
# exist, and a database would refuse to look it up rather than find nothing.
MAX_ITEM_ID = 2**31 - 1
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description="The item's id")]


def storable(text: str) -> str:
    """Refuse what no database stores as text: NUL, and lone surrogates (not UTF-8)."""
    if "\x00" in text:
        message = "must not contain a NUL character"
        raise ValueError(message)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            message = "must not contain a lone surrogate (it is not UTF-8)"
            raise ValueError(message) from None
    return text


# Text that every database stores as it is. The pattern tells clients (and
# the OpenAPI document) about the NUL; JSON Schema cannot say "UTF-8 only".
NO_NUL = "^[^\\u0000]*$"
Text = Annotated[str, AfterValidator(storable), Field(json_schema_extra={"pattern": NO_NUL})]


class ItemCreate(BaseModel):
    """What a client sends to create an item."""

    name: Text = Field(min_length=1, max_length=200)


class Item(BaseModel):
    """An item, with the id the service assigned."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
