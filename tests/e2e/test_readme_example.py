"""The README's "Defining your own service" runs as written: bank.py served by `up --app`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, Server

pytestmark = pytest.mark.slow


def test_the_readme_service_answers_the_readme_curls(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- readme-example: bank.py -->\n```python\n(.*?)```", readme, re.S)
    assert found is not None, "the README lost its marked example"
    (tmp_path / "bank.py").write_text(found.group(1))
    server = Server(tmp_path / "data", "--app", "bank:app", cwd=tmp_path).start()
    try:
        with server.client() as client:
            created = client.post("/api/accounts", json={"owner": "Ada"})
            assert created.status_code == 202, created.text
            token = {"Consistency-Token": created.headers["Consistency-Token"]}
            account = client.get(created.headers["Location"], headers=token)
            assert account.json() == {"id": created.json()["id"], "owner": "Ada", "version": 1}
            assert client.post("/api/accounts", json={"owner": ""}).status_code == 422
    finally:
        server.stop()
