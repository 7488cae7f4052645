"""The hand-written reference: the items API as an experienced engineer writes it
without a template, to measure the rendered service's database routes against.

FastAPI, SQLAlchemy's asyncio engine with its defaults (no pre-ping), one
session per request from a dependency, the ORM, the same two queries for a
list (the count and the page) and the same answers (``X-Total-Count``, 201,
404): no middleware, no problem documents, no metrics, no request IDs. It
reads and writes the ``items`` table that the rendered service's migrations
create, so both apps run the same statements on the same rows.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


def reference_app(database_url: str) -> FastAPI:
    """The reference app on ``database_url`` (an async SQLAlchemy URL)."""
    engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    SessionDep = Annotated[AsyncSession, Depends(get_session)]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "pass"}

    @app.get("/api/v1/items", response_model=list[ItemOut])
    async def list_items(
        session: SessionDep,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[ItemRow]:
        total = await session.scalar(select(func.count()).select_from(ItemRow))
        rows = await session.scalars(select(ItemRow).order_by(ItemRow.id).limit(limit).offset(offset))
        response.headers["X-Total-Count"] = str(total)
        return list(rows)

    @app.get("/api/v1/items/{item_id}", response_model=ItemOut)
    async def read_item(item_id: int, session: SessionDep) -> ItemRow:
        row = await session.get(ItemRow, item_id)
        if row is None:
            raise HTTPException(status_code=404, detail="Item not found")
        return row

    @app.post("/api/v1/items", response_model=ItemOut, status_code=201)
    async def create_item(body: ItemIn, session: SessionDep) -> ItemRow:
        row = ItemRow(name=body.name)
        session.add(row)
        await session.commit()
        return row

    return app
