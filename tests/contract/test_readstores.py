"""The read store contract on a real SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import pytest

from eventgate.projections import Projection
from eventgate.projections.postgres import PostgresReadStore
from eventgate.projections.protocol import ReadStore
from eventgate.projections.readstore import SQLiteReadStore
from tests.contract.readstore_contract import ReadStoreContract


class TestSQLiteReadStore(ReadStoreContract):
    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        return await SQLiteReadStore.open(directory / "readmodels.sqlite", projections)


class TestPostgresReadStore(ReadStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        name = "r_" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        admin = await asyncpg.connect(self.server_dsn)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.server_dsn.rsplit("/", 1)[0] + f"/{name}"
        return await PostgresReadStore.open(dsn, projections)
