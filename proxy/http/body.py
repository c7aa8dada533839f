"""Request bodies as handlers see them: received within the body timeout, Content-Encoding undone.

The proxy's server (:class:`proxy.http.server.ProxyServer`) hands bodies over as they arrived:
aiohttp's own decoding, in its HTTP parser, answers a body that does not match its
``Content-Encoding`` with a traceback in the log (gzip), as malformed HTTP (deflate) or with
advice to install a package (br). Decoding here makes every encoding problem one error,
``invalid_body_encoding``: 400 for a body its encoding cannot decode, 415 (with
``Accept-Encoding``) for an encoding the proxy does not decode; and a body that decodes to more
than ``server.max_body_bytes`` is a 413, as an uncompressed one is.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

from aiohttp import web

from proxy.http.server import ProxyRequestHandler
from proxy.http.state import CONFIG
from proxy.wire.errors import InvalidRequestError, ProxyError

log = logging.getLogger("adaptive_proxy.body")

SUPPORTED_ENCODINGS = ("gzip", "deflate")
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 §8.4.1.3
_GZIP_WBITS = 31
_ZLIB_WBITS = 15
_RAW_DEFLATE_WBITS = -15


class BodyEncodingError(InvalidRequestError):
    """A body its ``Content-Encoding`` cannot decode (400), or an encoding not decoded (415)."""

    default_code = "invalid_body_encoding"


class BodyTooLargeError(InvalidRequestError):
    """A body that decodes to more than the body limit (413)."""

    status = 413
    default_code = "request_too_large"


def content_codings(header_values: list[str]) -> list[str]:
    """The codings of ``Content-Encoding`` header values, in the order they were applied.

    ``identity`` (no coding) is dropped; an encoding the proxy does not decode is a 415.
    """
    codings: list[str] = []
    for value in header_values:
        for token in value.split(","):
            coding = token.strip().lower()
            coding = _ALIASES.get(coding, coding)
            if coding in ("", "identity"):
                continue
            if coding not in SUPPORTED_ENCODINGS:
                supported = " or ".join(SUPPORTED_ENCODINGS)
                raise BodyEncodingError(
                    f"Content-Encoding {coding!r} is not supported; send the body "
                    f"uncompressed or as {supported}",
                    status=415,
                    headers={"Accept-Encoding": ", ".join(SUPPORTED_ENCODINGS)},
                )
            codings.append(coding)
    return codings


def decode_body(body: bytes, codings: list[str], *, limit_bytes: int) -> bytes:
    """``body`` with ``codings`` undone (the last applied first), at most ``limit_bytes`` long."""
    for coding in reversed(codings):
        if not body:
            break  # nothing was compressed
        try:
            body = _inflate(body, coding, limit_bytes)
        except zlib.error as exc:
            reason = str(exc).rpartition(": ")[2]
            raise BodyEncodingError(
                f"request body cannot be decoded as {coding} ({reason}); check Content-Encoding"
            ) from None
    return body


def _inflate(data: bytes, coding: str, limit_bytes: int) -> bytes:
    if coding == "gzip":
        return _decompress(data, _GZIP_WBITS, limit_bytes, members=True)
    # HTTP's deflate is zlib-wrapped (RFC 1950); many clients send raw deflate (RFC 1951).
    wbits = _ZLIB_WBITS if _has_zlib_header(data) else _RAW_DEFLATE_WBITS
    return _decompress(data, wbits, limit_bytes, members=False)


def _has_zlib_header(data: bytes) -> bool:
    # CM = 8 (deflate), CINFO ≤ 7 (window ≤ 32 KiB), and the header check bits (RFC 1950 §2.2).
    return (
        len(data) >= 2
        and data[0] & 0x0F == 8
        and data[0] >> 4 <= 7
        and ((data[0] << 8) | data[1]) % 31 == 0
    )


def _decompress(data: bytes, wbits: int, limit_bytes: int, *, members: bool) -> bytes:
    """Inflate ``data`` (gzip: one member after another), refusing output over the limit."""
    out = bytearray()
    rest = data
    while True:
        stream = zlib.decompressobj(wbits)
        # One byte over the limit tells "too large" from "exactly the limit".
        out += stream.decompress(rest, limit_bytes + 1 - len(out))
        if len(out) > limit_bytes:
            raise BodyTooLargeError(
                f"request body too large once decoded: over {limit_bytes} bytes "
                "(see server.max_body_bytes)"
            )
        if not stream.eof:
            raise zlib.error("the compressed data ends early")
        rest = stream.unused_data
        if not rest or not members:
            break
    if rest:
        raise zlib.error("data after the end of the compressed stream")
    return bytes(out)


async def read_body(request: web.Request) -> bytes:
    """The request's body within ``server.body_timeout_s`` (408), decoded (else 400/413/415)."""
    server = request.app[CONFIG].snapshot.config.server
    try:
        # Before reading: an encoding the proxy cannot decode needs none of the body.
        codings = content_codings(request.headers.getall("Content-Encoding", []))
        if request.content.is_eof():
            # The whole body came in with the headers (the usual small request): nothing to
            # wait for, so no deadline to arm and cancel.
            body = await request.read()
        else:
            async with asyncio.timeout(server.body_timeout_s):
                body = await request.read()
        if isinstance(request.protocol, ProxyRequestHandler):
            body = decode_body(body, codings, limit_bytes=server.max_body_bytes)
        # else: a plain aiohttp server has decoded the body in its parser.
    except TimeoutError:
        raise ProxyError(
            f"request body not received within {server.body_timeout_s:g} s (server.body_timeout_s)",
            status=408,
            code="request_timeout",
        ) from None
    except BodyEncodingError as error:
        log.info("refused a request body from %s: %s", request.remote, error.message)
        raise
    except web.RequestPayloadError as exc:
        # Served by a plain aiohttp server, whose parser failed to decode the body.
        cause = exc.__cause__ or exc.__context__
        detail = str(cause or exc).strip() or type(exc).__name__
        log.info("refused a request body from %s: %s", request.remote, detail)
        raise BodyEncodingError(
            f"request body cannot be decoded ({detail}); check Content-Encoding"
        ) from None
    return body
