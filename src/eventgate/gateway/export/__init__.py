"""Configuration for a dedicated gateway (Envoy, APISIX) from the declarations the embedded
gateway serves: model.py reads them once (the route table, the config's consumers and
limits, the services' addresses, the API keys checked against their hashes); envoy.py and
apisix.py only translate that model."""
