"""A small users API on Structum Database: ``sync_app`` and ``async_app``."""
