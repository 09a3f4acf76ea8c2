"""`eventgate status`: every connected process, and how far behind each checkpoint is."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from eventgate.bootstrap import open_registry
from eventgate.broker.lag import broker_lag
from eventgate.cli.common import (
    AppOption,
    BrokerUrl,
    DatabaseUrl,
    DataDir,
    app,
    chosen_app,
    open_existing,
    out,
    run,
    settings_for,
)
from eventgate.config import DEFAULT_DATA_DIR
from eventgate.functions.admin import function_rows
from eventgate.health.probes import probe_all

__all__ = ["status"]


@app.command()
def status(
    data: DataDir = DEFAULT_DATA_DIR,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """The processes connected to this data (roles, host, pid, last heartbeat, leases, and
    what each one's /readyz says where it has an address),
    each projection's and function's checkpoint with its lag, and who runs each projection;
    with --broker, the relay's checkpoint and lag and each function's broker lag."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url, None, broker)

    async def gather() -> dict[str, Any]:
        system = await open_existing(settings, served)
        registry = await open_registry(settings)
        try:
            processes = await registry.processes()
            projections = await system.upsert.status()
            functions = await function_rows(system.functions, system.store)
            head = await system.store.head()
            hub = None
            if settings.broker_url is not None:
                hub = await broker_lag(system, [row["name"] for row in functions])
        finally:
            await registry.close()
            await system.close()
        readiness = await probe_all([p.address for p in processes])
        holders = {lease: p.id for p in processes for lease in p.leases}
        if hub is not None:
            hub["relay"]["held_by"] = holders.get("relay")
        return {
            "head": head,
            "processes": [{**p.to_json(), "ready": readiness.get(p.address)} for p in processes],
            "projections": [{**s.to_json(), "held_by": holders.get(s.name)} for s in projections],
            "functions": functions,
            "broker": hub,
        }

    found = run(gather)
    if as_json:
        sys.stdout.write(json.dumps(found) + "\n")
        return
    now = time.time()
    table = Table("process", "roles", "host", "pid", "address", "heartbeat",
                  "projection leases", "ready", title="processes")  # fmt: skip
    for column in table.columns[:5]:
        column.overflow = "fold"  # ids and addresses whole, to copy them
    for p in found["processes"]:
        beat = f"{max(now - p['heartbeat'], 0):.1f}s ago"
        table.add_row(p["id"], ",".join(p["roles"]), p["host"], str(p["pid"]), p["address"],
                      beat, str(len(p["leases"])), p["ready"] or "-")  # fmt: skip
    out.print(table)
    if not found["processes"]:
        out.print("no process is connected")
    hub = found["broker"]
    checkpoints = Table("kind", "name", "checkpoint", "lag", "run by", "parked / dead letters",
                        title="checkpoints")  # fmt: skip
    if hub is not None:
        checkpoints.add_column("broker lag")
        relay = hub["relay"]
        standby = sum("relay" in p["roles"] for p in found["processes"])
        checkpoints.add_row("relay", hub["stream"], str(relay["checkpoint"]), str(relay["lag"]),
                            relay["held_by"] or f"{standby} standing by", "-", "")  # fmt: skip
    for row in found["projections"]:
        checkpoints.add_row("projection", row["name"], str(row["checkpoint"]), str(row["lag"]),
                            row["held_by"] or "-", str(len(row["parked"])),
                            *([""] if hub else []))  # fmt: skip
    workers = [p["id"] for p in found["processes"] if "functions" in p["roles"]]
    for row in found["functions"]:
        run_by = f"{len(workers)} worker(s), by partition" if workers else "-"
        lag = hub["functions"].get(row["name"]) if hub else None
        extra = [str(lag) if lag is not None else "-"] if hub else []
        position = (row["checkpoint"], row["lag"]) if lag is None else ("-", "-")
        checkpoints.add_row("function", row["name"], *map(str, position), run_by,
                            str(row["dead_letters"]), *extra)  # fmt: skip
    out.print(checkpoints)
    out.print(f"head of the log: {found['head']}")
