"""The web console at /console: static pages that read and change the system through the
same HTTP API as any client, with an admin key (docs/operations.md "Web console")."""

from eventgate.console.pages import CONTENT_SECURITY_POLICY, ConsolePages, WithConsole

__all__ = ["CONTENT_SECURITY_POLICY", "ConsolePages", "WithConsole"]
