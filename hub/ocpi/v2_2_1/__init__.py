"""OCPI 2.2.1 wire objects, one module per OCPI module; every public name is re-exported here.

Call sites write ``from hub.ocpi import v2_2_1 as ocpi`` and then ``ocpi.Credentials`` etc., so the
wire classes never collide with ORM classes of the same name (house style §3.4).
"""

from hub.ocpi.types import DateTime, DisplayText, Price
from hub.ocpi.v2_2_1.credentials import (
    BusinessDetails,
    Credentials,
    CredentialsRole,
    CredentialsToken,
    Image,
    ImageCategory,
    Role,
)
from hub.ocpi.v2_2_1.versions import Endpoint, InterfaceRole, ModuleID, Version, VersionDetails, VersionNumber

__all__ = [
    "BusinessDetails",
    "Credentials",
    "CredentialsRole",
    "CredentialsToken",
    "DateTime",
    "DisplayText",
    "Endpoint",
    "Image",
    "ImageCategory",
    "InterfaceRole",
    "ModuleID",
    "Price",
    "Role",
    "Version",
    "VersionDetails",
    "VersionNumber",
]
