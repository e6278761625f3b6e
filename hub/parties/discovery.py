"""Reading a partner's versions and version details during the credentials handshake (credentials §Registration).

Every failure maps to the status code the receiver of a credentials POST/PUT must answer with: 3001 when the
partner's API cannot be used, 3002 when it offers no version we speak, 3003 when required endpoints are missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import WireError, decode
from hub.ocpi.envelope import OcpiStatus
from hub.platform.http import PartnerCallError, PartnerClient
from hub.platform.ssrf import UnsafeUrlError, check_url
from hub.platform.web import OcpiError

SUPPORTED_VERSION = "2.2.1"
# The one endpoint every platform must offer to be registered: the hub PUTs to it when it rotates its own token.
# hubclientinfo RECEIVER is advised but not required, so plain OCPI 2.2.1 platforms can connect (ADR 0002).
REQUIRED_MODULES = ("credentials",)


class _RawEnvelope(msgspec.Struct):
    status_code: int
    data: msgspec.Raw = msgspec.Raw(b"null")
    status_message: str | None = None


@dataclass(frozen=True, slots=True)
class Discovery:
    version: str
    version_url: str
    endpoints: list[ocpi.Endpoint]
    token_form: str

    def endpoint_url(self, identifier: str, role: str | None = None) -> str | None:
        for endpoint in self.endpoints:
            if endpoint.identifier == identifier and (role is None or endpoint.role == role):
                return endpoint.url
        return None


class UnauthorizedError(Exception):
    """The partner answered 401: the token (or its form) is not accepted."""


async def _get_data(
    client: PartnerClient, url: str, *, token: str, token_form: str, timeout: float, allow_private: bool, what: str
) -> bytes:
    try:
        await check_url(url, allow_private=allow_private)
    except UnsafeUrlError as exc:
        raise OcpiError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"refusing the {what} URL: {exc}") from exc
    try:
        result = await client.request("GET", url, token=token, token_form=token_form, timeout=timeout)
    except PartnerCallError as exc:
        raise OcpiError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"cannot read your {what}: {exc.message}") from exc
    if result.status == 401:
        raise UnauthorizedError(f"{what} at {url} answered HTTP 401")
    if result.status != 200:
        raise OcpiError(
            OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"cannot read your {what}: {url} answered HTTP {result.status}"
        )
    try:
        envelope = decode(result.body, _RawEnvelope)
    except WireError as exc:
        raise OcpiError(
            OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"your {what} at {url} is not an OCPI response: {exc.message}"
        ) from exc
    if envelope.status_code != OcpiStatus.SUCCESS:
        raise OcpiError(
            OcpiStatus.UNABLE_TO_USE_CLIENT_API,
            f"your {what} at {url} answered status {envelope.status_code}: {envelope.status_message or ''}".rstrip(),
        )
    return bytes(envelope.data)


async def discover(
    client: PartnerClient,
    versions_url: str,
    *,
    token: str,
    token_form: str,
    timeout: float,
    allow_private: bool,
    try_other_form: bool = False,
) -> Discovery:
    """GET versions, pick 2.2.1, GET its details and check the required endpoints.

    With ``try_other_form`` a 401 on the versions call is retried with the other Authorization form (Base64 vs
    raw), because pre-2.2 peers expect the raw token (transport_and_format §4.1.3 note).
    """
    forms = [token_form, "raw" if token_form == "base64" else "base64"] if try_other_form else [token_form]
    for attempt, form in enumerate(forms, start=1):
        try:
            data = await _get_data(
                client,
                versions_url,
                token=token,
                token_form=form,
                what="versions",
                timeout=timeout,
                allow_private=allow_private,
            )
        except UnauthorizedError as exc:
            if attempt == len(forms):
                raise OcpiError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"{exc}: the token was refused") from exc
        else:
            token_form = form
            break
    try:
        # Be liberal (DESIGN §5): a lone Version object instead of a list is accepted.
        versions = [decode(data, ocpi.Version)] if data.lstrip()[:1] == b"{" else decode(data, list[ocpi.Version])
    except WireError as exc:
        raise OcpiError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"your versions list is invalid: {exc.message}") from exc
    chosen = next((v for v in versions if str(v.version) == SUPPORTED_VERSION), None)
    if chosen is None:
        offered = ", ".join(str(v.version) for v in versions) or "none"
        raise OcpiError(
            OcpiStatus.UNSUPPORTED_VERSION, f"no mutual OCPI version: the hub speaks 2.2.1, you offer {offered}"
        )
    try:
        data = await _get_data(
            client,
            chosen.url,
            token=token,
            token_form=token_form,
            what="version details",
            timeout=timeout,
            allow_private=allow_private,
        )
        details = decode(data, ocpi.VersionDetails)
    except UnauthorizedError as exc:
        raise OcpiError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"{exc}: the token was refused") from exc
    except WireError as exc:
        raise OcpiError(
            OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"your version details are invalid: {exc.message}"
        ) from exc
    present = {str(endpoint.identifier) for endpoint in details.endpoints}
    missing = [module for module in REQUIRED_MODULES if module not in present]
    if missing:
        raise OcpiError(
            OcpiStatus.NO_MATCHING_ENDPOINTS, f"your version details lack required endpoints: {', '.join(missing)}"
        )
    return Discovery(
        version=SUPPORTED_VERSION, version_url=chosen.url, endpoints=list(details.endpoints), token_form=token_form
    )
