"""The operators' surface: API keys with roles and the JSON admin API under ``/admin/api/``."""
