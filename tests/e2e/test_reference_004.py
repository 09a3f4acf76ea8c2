"""The exchanges of reference 004, replayed literally on the article's own paths."""

from __future__ import annotations

from tests.e2e.server import Server

ARTICLE_ACCEPT = {"Accept": "application/json, text/plain, */*"}


def test_the_article_exchanges(server: Server) -> None:
    with server.client() as client:
        # POST /api/InventoryItem {"name": "CQRS Book"} -> 202 Accepted + Location
        created = client.post(
            "/api/InventoryItem",
            content=b'{"name": "CQRS Book"}',
            headers={"Content-Type": "application/json; domain-model=CreateInventoryItemCommand"},
        )
        assert created.status_code == 202
        location = created.headers["Location"]
        item_id = location.rsplit("/", 1)[1]
        path = f"/api/InventoryItem/{item_id}"
        wait = {"Consistency-Token": created.headers["Consistency-Token"]}

        # GET /api/InventoryItem -> 200 with 5LMT Content-Type and Cache-Control
        listing = client.get("/api/InventoryItem", headers={**ARTICLE_ACCEPT, **wait})
        assert listing.status_code == 200
        assert listing.headers["Cache-Control"] == "max-age=0, private"
        assert "domain-model=InventoryItemListDataCollection" in listing.headers["Content-Type"]
        assert "format=application%2Fjson" in listing.headers["Content-Type"]
        # ... and with If-None-Match -> 304 Not Modified + ETag
        etag = listing.headers["ETag"]
        cached = client.get("/api/InventoryItem", headers={**ARTICLE_ACCEPT, "If-None-Match": etag})
        assert cached.status_code == 304 and cached.headers["ETag"] == etag

        # HEAD /api/InventoryItem -> 200 + ETag, no body
        head = client.head("/api/InventoryItem", headers=ARTICLE_ACCEPT)
        assert head.status_code == 200 and head.headers["ETag"] == etag and head.content == b""

        # PUT with the item's ETag in If-Match -> 202; replayed -> 412 Precondition Failed
        item_etag = client.get(path, headers=wait).headers["ETag"]
        rename = {"Content-Type": "application/json; domain-model=RenameInventoryItemCommand"}
        body = b'{"newName": "CQRS Book 1"}'
        renamed = client.put(path, content=body, headers={**rename, "If-Match": item_etag})
        assert renamed.status_code == 202
        stale = client.put(path, content=body, headers={**rename, "If-Match": item_etag})
        assert stale.status_code == 412

        # renaming changes the list, so its ETag changes (cache invalidation)
        wait = {"Consistency-Token": renamed.headers["Consistency-Token"]}
        fresh = client.get(
            "/api/InventoryItem", headers={**ARTICLE_ACCEPT, "If-None-Match": etag, **wait}
        )
        assert fresh.status_code == 200 and fresh.headers["ETag"] != etag

        # POST {"count": "230"} with domain-model=CheckInItemsToInventoryCommand -> 202
        checked_in = client.post(
            path,
            content=b'{"count": "230"}',
            headers={
                "Content-Type": "application/json; domain-model=CheckInItemsToInventoryCommand"
            },
        )
        assert checked_in.status_code == 202
        wait = {"Consistency-Token": checked_in.headers["Consistency-Token"]}
        assert client.get(path, headers=wait).json()["currentCount"] == 230

        # OPTIONS -> 200, Allow, a JSON string array typed String[] (46 bytes, as in the article)
        options = client.options(path)
        assert options.status_code == 200 and "Allow" in options.headers
        assert "domain-model=String%5B%5D" in options.headers["Content-Type"]
        assert options.headers["Content-Length"] == "46"

        # PUT /api/InventoryItem -> 405 {"message":"Http Method not supported"}
        refused = client.put("/api/InventoryItem")
        assert refused.status_code == 405
        assert refused.json()["message"] == "Http Method not supported"

        # DELETE -> 202 Accepted; the item is then gone
        deleted = client.delete(path)
        assert deleted.status_code == 202
        gone = client.get(path, headers={"Consistency-Token": deleted.headers["Consistency-Token"]})
        assert gone.status_code == 410


def test_the_article_and_canonical_paths_are_one_resource(server: Server) -> None:
    with server.client() as client:
        created = client.post("/api/inventory-items", json={"name": "same"})
        wait = {"Consistency-Token": created.headers["Consistency-Token"]}
        item_id = created.json()["id"]
        canonical = client.get(f"/api/inventory-items/{item_id}", headers=wait)
        article = client.get(f"/api/InventoryItem/{item_id}", headers=wait)
        assert canonical.json() == article.json()
        assert canonical.headers["ETag"] == article.headers["ETag"]
