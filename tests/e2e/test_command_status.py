"""Command status over real HTTP through the gateway: the 202 points to it, it turns from
accepted to applied, `Prefer: wait` answers once the read models have applied the command."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.conftest import create, stock

PROBLEM = "application/problem+json"


def status_of(client: httpx.Client, accepted: httpx.Response) -> dict[str, Any]:
    response = client.get(accepted.json()["links"]["status"])
    assert response.status_code == 200, response.text
    assert "domain-model=CommandStatus" in response.headers["Content-Type"]
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def applied(client: httpx.Client, accepted: httpx.Response) -> dict[str, Any]:
    """The status once the read models have applied the command and its functions ran."""
    deadline = time.monotonic() + 10
    while (status := status_of(client, accepted))["status"] != "applied" or (
        status["outcome"] == "pending"
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_a_command_s_status_lists_its_events_and_turns_applied(client: httpx.Client) -> None:
    accepted = create(client, "status book")
    body = accepted.json()
    status = applied(client, accepted)
    assert status["commandId"] == body["commandId"]
    assert status["commandType"] == "CreateInventoryItem"
    assert status["outcome"] == "succeeded" and status["failures"] == []
    assert status["functions"] == [{"function": "audit_trail", "state": "done"}]
    assert status["pendingReadModels"] == []
    assert status["resources"] == [accepted.headers["Location"]]
    assert status["consistencyToken"] == body["consistencyToken"]
    [event] = status["events"]
    assert (event["type"], event["stream"], event["streamVersion"]) == (
        "InventoryItemCreated", body["id"], 1)  # fmt: skip
    assert status["links"] == {"self": body["links"]["status"]}
    assert client.head(body["links"]["status"]).status_code == 200


def test_prefer_wait_answers_200_once_applied_and_the_read_sees_it(client: httpx.Client) -> None:
    created = create(client, "waited")
    url = created.headers["Location"]
    prefer = {"Prefer": "wait=5", "Content-Type": "application/json; domain-model=CheckIn"
                                                  "ItemsToInventory"}  # fmt: skip
    checked_in = client.post(url, json={"count": 7}, headers=prefer)
    assert checked_in.status_code == 200, checked_in.text
    assert checked_in.json()["status"] == "applied"
    assert checked_in.headers["Preference-Applied"] == "wait=5"
    assert checked_in.headers["Link"].endswith('; rel="monitor"')
    assert client.get(url).json()["currentCount"] == 7  # no Consistency-Token needed


def test_without_prefer_the_answer_is_202_accepted(client: httpx.Client) -> None:
    accepted = create(client, "not waited")
    assert accepted.status_code == 202 and "Preference-Applied" not in accepted.headers


def test_a_command_that_changed_nothing_is_applied_and_has_no_status(
    client: httpx.Client,
) -> None:
    url = create(client, "gone soon").headers["Location"]
    assert client.delete(url).status_code == 202
    again = client.delete(url)
    assert again.status_code == 202
    assert again.json()["status"] == "applied" and "links" not in again.json()
    assert "Link" not in again.headers
    missing = client.get(f"/api/commands/{again.json()['commandId']}")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == PROBLEM


def test_unknown_and_absurd_command_ids_are_404(client: httpx.Client) -> None:
    for command_id in ("no-such-command", "x" * 5000):
        response = client.get(f"/api/commands/{command_id}")
        assert response.status_code in (404, 414), response.text
        assert response.headers["Content-Type"] == PROBLEM


def test_a_refused_command_has_no_status_and_a_later_one_lists_only_its_own_events(
    client: httpx.Client,
) -> None:
    url = create(client, "stocked").headers["Location"]
    refused = stock(client, url, "RemoveItemsFromInventory", 3)
    assert refused.status_code == 409
    accepted = stock(client, url, "CheckInItemsToInventory", 2)
    assert [e["type"] for e in applied(client, accepted)["events"]] == ["ItemsCheckedInToInventory"]
