"""Structured logging for Structum Lab, built on the standard :mod:`logging` module.

>>> from structum_lab.plugins.observability import get_logger
>>> logger = get_logger(__name__)
>>> logger.info("Database pool status", checked_out=2, available=8)

The line reads ``Database pool status checked_out=2 available=8`` and the record carries
``record.fields == {"checked_out": 2, "available": 8}``. See :class:`StructuredLogger`.
"""

from __future__ import annotations

from ._logger import StructuredLogger, get_logger, render_fields
from ._masking import (
    MASK,
    is_secret_key,
    mask_text,
    mask_url,
    mask_value,
    safe_str,
    secret_forms,
    url_secrets,
)
from ._version import __version__

__all__ = [
    "MASK",
    "StructuredLogger",
    "__version__",
    "get_logger",
    "is_secret_key",
    "mask_text",
    "mask_url",
    "mask_value",
    "render_fields",
    "safe_str",
    "secret_forms",
    "url_secrets",
]
