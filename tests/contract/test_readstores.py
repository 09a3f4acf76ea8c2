"""The read store contract on a real SQLite file and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventgate.projections import Projection
from eventgate.projections.postgres import PostgresReadStore
from eventgate.projections.protocol import ReadStore
from eventgate.projections.readstore import SQLiteReadStore
from tests.contract.readstore_contract import ApplyAllContract, ReadStoreContract
from tests.postgres import database_for


class OnSQLite:
    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        return await SQLiteReadStore.open(directory / "readmodels.sqlite", projections)


class OnPostgres:
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        dsn = await database_for(self.server_dsn, str(directory), "r")
        return await PostgresReadStore.open(dsn, projections)


class TestSQLiteReadStore(OnSQLite, ReadStoreContract):
    pass


class TestPostgresReadStore(OnPostgres, ReadStoreContract):
    pass


class TestSQLiteApplyAll(OnSQLite, ApplyAllContract):
    pass


class TestPostgresApplyAll(OnPostgres, ApplyAllContract):
    pass
