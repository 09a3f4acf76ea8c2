"""Traces through events: OpenTelemetry spans for requests, commands, appends, projection
updates and function invocations, joined across processes by the W3C trace context each
event carries in its metadata (decision 0010).

`spans` is what the request path and the runners call (cheap when tracing is off); `setup`
turns tracing on from the environment; `http` traces a process's HTTP front."""
