"""Dependencies that routes declare with ``Annotated`` aliases.

They are ``async`` although they do not await: FastAPI runs a plain ``def``
dependency in its thread pool, a hand-off that costs more than the lookup.
"""

from typing import Annotated, cast

from fastapi import Depends, Request

from .settings import Settings
from .store import ItemStore


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return cast("Settings", request.app.state.settings)


async def get_store(request: Request) -> ItemStore:
    """The item store that the lifespan opened."""
    return cast("ItemStore", request.app.state.store)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ItemStore, Depends(get_store)]
