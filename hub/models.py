"""Every ORM model of every context, imported in one place so Alembic sees the whole schema (composition root)."""

from __future__ import annotations

from clearing import models as clearing_models
from clearing.settlement import models as settlement_models
from hub.admin.models import OperatorKey
from hub.agreements.models import RoamingAgreement
from hub.objects import models as stored_objects
from hub.parties.models import Party, Platform, PlatformEndpoint
from hub.platform.db import Base
from routing.links import CommandLink
from routing.messagelog import MessageLogRow
from routing.outbox import OutboxMessage

__all__ = [
    "Base",
    "CommandLink",
    "MessageLogRow",
    "OperatorKey",
    "OutboxMessage",
    "Party",
    "Platform",
    "PlatformEndpoint",
    "RoamingAgreement",
    "clearing_models",
    "settlement_models",
    "stored_objects",
]
