"""An httpx transport that sends requests through aiohttp's connection pool.

The adapters speak httpx (requests, responses, errors). Underneath, this
transport does the HTTP: on this machine aiohttp's client costs a fifth to
a tenth of httpcore's CPU per provider call, and httpcore's pool scans every
connection on every request, so its cost grows with concurrency
(docs/performance.md). Timeouts arrive as httpx's per-request ``timeout``
extension and failures leave as httpx's exceptions, so retry and timeout
handling above is unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import yarl

# Headers aiohttp computes itself; passing httpx's copies would duplicate them.
_OWN_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Serve an ``httpx.AsyncClient`` from one pooled ``aiohttp`` session."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._connector_limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connector_limit),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open_session()
        try:
            response = await session.request(
                request.method,
                # Already encoded by httpx; re-quoting would break signatures.
                yarl.URL(str(request.url), encoded=True),
                headers=_headers(request),
                data=await request.aread(),
                timeout=_timeout(request.extensions.get("timeout") or {}),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            response.status,
            headers=[(k, v) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """The response body, read lazily; closing it early drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request):
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            # A body abandoned mid-way (a client that left a stream) closes
            # the connection, which is how the provider learns to stop.
            self._response.close()


def _headers(request: httpx.Request) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in request.headers.raw
        if name.lower() not in _OWN_HEADERS
    ]


def _timeout(spec: dict[str, Any]) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=spec.get("connect"),
        sock_read=spec.get("read"),
    )


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.HTTPError:
    """Translate an aiohttp failure into the httpx error the caller expects."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)
