"""Example apps, each written only against eventgate's public API: run one with `eventgate up
--app eventgate.examples.<name>:app`, or copy its folder out and run it from there."""
