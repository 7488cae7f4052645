"""Where items are kept: the interface the routes rely on."""

from typing import Protocol

from .schemas import Item


class ItemStore(Protocol):
    """Keeps items and assigns their ids."""

    async def add(self, name: str) -> Item:
        """Store a new item and return it with its id."""
        ...

    async def get(self, item_id: int) -> Item | None:
        """Return the item, or None when there is none with that id."""
        ...

    async def page(self, *, limit: int, offset: int) -> list[Item]:
        """Return up to ``limit`` items in id order, skipping ``offset``."""
        ...

    async def count(self) -> int:
        """Return how many items there are."""
        ...
