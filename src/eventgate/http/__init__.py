"""HTTP semantics shared by the command API, the query API and the gateway."""
