"""Events to clients: the log as Server-Sent Events, CloudEvents in structured mode."""
