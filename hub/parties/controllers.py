"""The configuration modules a platform calls before anything is routed: versions, version details, credentials.

Handlers read the raw body and decode it themselves so every failure maps to the exact status the specification
prescribes (HTTP 400 + 2001 for bytes that are not JSON, HTTP 200 + 2001 naming the field for a bad payload).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidJson, InvalidPayload, decode, encode
from hub.ocpi.envelope import OcpiStatus
from hub.parties.auth import Caller, authenticate
from hub.parties.service import PartyRegistry
from hub.platform.web import OcpiError, ocpi_response

VERSION = "2.2.1"
FUNCTIONAL_MODULES = ("cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens")


def _registry(state: State) -> PartyRegistry:
    registry: PartyRegistry = state.registry
    return registry


async def _caller(request: Request[Any, Any, State]) -> Caller:
    return await authenticate(request.app.state.sessions, request.headers.get("authorization"))


def version_details(public_url: str) -> ocpi.VersionDetails:
    """Our endpoints: both interfaces of every functional module, plus credentials and hubclientinfo.

    A hub plays both roles for every functional module it relays (hub notes §2.1). URLs end in "/" as advertised
    (DESIGN §5); incoming URLs are accepted with or without it.
    """
    base = f"{public_url}/ocpi/{VERSION}"
    endpoints = [
        ocpi.Endpoint(identifier="credentials", role=ocpi.InterfaceRole.SENDER, url=f"{base}/credentials/"),
        ocpi.Endpoint(identifier="hubclientinfo", role=ocpi.InterfaceRole.SENDER, url=f"{base}/hubclientinfo/"),
    ]
    for module in FUNCTIONAL_MODULES:
        for role in (ocpi.InterfaceRole.SENDER, ocpi.InterfaceRole.RECEIVER):
            endpoints.append(ocpi.Endpoint(identifier=module, role=role, url=f"{base}/{role.lower()}/{module}/"))
    return ocpi.VersionDetails(version=VERSION, endpoints=endpoints)


@get("/ocpi/versions", operation_id="OcpiVersions", include_in_schema=False)
async def get_versions(request: Request[Any, Any, State]) -> Response[bytes]:
    await _caller(request)  # version_information_endpoint §Versions: open to token A and registered tokens alike
    versions = [ocpi.Version(version=VERSION, url=f"{request.app.state.settings.public_url}/ocpi/{VERSION}")]
    return ocpi_response(data_json=encode(versions))


@get(f"/ocpi/{VERSION}", operation_id="OcpiVersionDetails", include_in_schema=False)
async def get_version_details(request: Request[Any, Any, State]) -> Response[bytes]:
    await _caller(request)
    return ocpi_response(data_json=request.app.state.version_details_json)


def _decode_credentials(body: bytes) -> ocpi.Credentials:
    try:
        return decode(body, ocpi.Credentials)
    except InvalidJson as exc:
        # transport_and_format §HTTP status: a body that is not JSON is a transport error, HTTP 400.
        raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, exc.message, http_status=400) from exc
    except InvalidPayload as exc:
        raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, exc.message) from exc


@get(f"/ocpi/{VERSION}/credentials", operation_id="OcpiGetCredentials", include_in_schema=False)
async def get_credentials(request: Request[Any, Any, State]) -> Response[bytes]:
    caller = await _caller(request)
    # credentials §GET: the token in the object is the one the caller uses with us; only its hash is stored, so
    # it is echoed from the caller's own header.
    return ocpi_response(data_json=encode(_registry(request.app.state).identity.credentials(caller.token)))


@post(f"/ocpi/{VERSION}/credentials", operation_id="OcpiPostCredentials", include_in_schema=False, status_code=200)
async def post_credentials(request: Request[Any, Any, State]) -> Response[bytes]:
    caller = await _caller(request)
    if caller.registered:
        # credentials §POST: 405 for a platform that is already registered, whatever its body says.
        raise OcpiError(OcpiStatus.CLIENT_ERROR, "already registered: use PUT to update credentials", http_status=405)
    body = _decode_credentials(await request.body())
    credentials = await _registry(request.app.state).register(caller, body)
    return ocpi_response(data_json=encode(credentials))


@put(f"/ocpi/{VERSION}/credentials", operation_id="OcpiPutCredentials", include_in_schema=False)
async def put_credentials(request: Request[Any, Any, State]) -> Response[bytes]:
    caller = await _caller(request)
    if not caller.registered:
        raise OcpiError(OcpiStatus.CLIENT_ERROR, "not registered: use POST to register", http_status=405)
    body = _decode_credentials(await request.body())
    credentials = await _registry(request.app.state).update(caller, body)
    return ocpi_response(data_json=encode(credentials))


@delete(f"/ocpi/{VERSION}/credentials", operation_id="OcpiDeleteCredentials", include_in_schema=False, status_code=200)
async def delete_credentials(request: Request[Any, Any, State]) -> Response[bytes]:
    caller = await _caller(request)
    await _registry(request.app.state).unregister(caller)
    return ocpi_response()


ROUTES = [
    get_versions,
    get_version_details,
    get_credentials,
    post_credentials,
    put_credentials,
    delete_credentials,
]
