"""The event hub on a real broker: NATS JetStream carries the store's events to consumers."""
