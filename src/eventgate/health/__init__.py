"""Is this process alive, is it ready, and what is it doing: /healthz, /readyz, JSON logs."""

from eventgate.health.logs import AccessLog, setup_logging
from eventgate.health.probes import WithProbes
from eventgate.health.readiness import Readiness, system_checks

__all__ = ["AccessLog", "Readiness", "WithProbes", "setup_logging", "system_checks"]
