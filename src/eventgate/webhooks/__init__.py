"""Webhooks: subscriptions made over the admin API, each delivered as a function would be."""
