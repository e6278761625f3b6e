"""Every ORM model of every context, imported in one place so Alembic sees the whole schema (composition root)."""

from __future__ import annotations

from hub.admin.models import OperatorKey
from hub.objects import models as stored_objects
from hub.parties.models import Party, Platform, PlatformEndpoint
from hub.platform.db import Base
from routing.outbox import OutboxMessage

__all__ = ["Base", "OperatorKey", "OutboxMessage", "Party", "Platform", "PlatformEndpoint", "stored_objects"]
