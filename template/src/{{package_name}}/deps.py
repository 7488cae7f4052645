"""Dependencies that routes declare with ``Annotated`` aliases."""

from typing import Annotated, cast

from fastapi import Depends, Request

from .settings import Settings
from .store import ItemStore


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return cast("Settings", request.app.state.settings)


def get_store(request: Request) -> ItemStore:
    """The item store that the lifespan opened."""
    return cast("ItemStore", request.app.state.store)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ItemStore, Depends(get_store)]
