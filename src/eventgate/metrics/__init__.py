"""Prometheus metrics of every eventgate process (prometheus-client's default registry).

What each process measures is defined once in `families.py`; `http.py` times requests by
route pattern; `sampling.py` reads checkpoints and lags from the stores at scrape time;
`endpoint.py` answers `/metrics` (through the gateway, scope `admin`, or on a process's
loopback `--admin-port`). The reference table is in docs/operations.md.

The package imports nothing itself: the event stores import `families` from deep inside.
"""
