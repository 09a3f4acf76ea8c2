"""The API gateway: the only public port, routing by method and path to upstream apps."""
