"""Where items are kept: the interface the routes rely on."""

from dataclasses import dataclass
from typing import Protocol

from .schemas import Item


@dataclass(frozen=True, slots=True)
class Page:
    """Some items in id order, and how many items there are in all."""

    items: list[Item]
    total: int


class ItemStore(Protocol):
    """Keeps items and assigns their ids."""

    async def add(self, name: str) -> Item:
        """Store a new item and return it with its id."""
        ...

    async def get(self, item_id: int) -> Item | None:
        """Return the item, or None when there is none with that id."""
        ...

    async def page(self, *, limit: int, offset: int) -> Page:
        """Return up to ``limit`` items in id order, skipping ``offset``, and the total."""
        ...
