"""Pool metrics through OpenTelemetry (``pip install "structum-database[otel]"``).

Every database reports the semantic conventions' connection-pool metrics
(``db.client.connection.count``, ``.idle.max``, ``.idle.min``, ``.max``,
``.pending_requests``, ``.timeouts``, ``.create_time``, ``.wait_time``, ``.use_time``) with
``db.client.connection.pool.name`` set to its ``name``, through the global meter provider, on
its own: configure an OpenTelemetry SDK and they appear. These functions choose another provider
or switch recording off. See the README's "Observability" section.
"""

from __future__ import annotations

from ._observe import INSTALL_HINT, disable_metrics, enable_metrics, metrics_enabled

__all__ = ["INSTALL_HINT", "disable_metrics", "enable_metrics", "metrics_enabled"]
