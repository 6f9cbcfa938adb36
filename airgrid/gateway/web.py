"""The gateway's HTTP endpoint: ``GET /metrics`` (Prometheus), ``GET /health`` and
``/health/ready`` (200 or 503: Kafka acknowledges), ``/health/live`` (200 while it answers), the
same paths as the worker's, so one probe configuration serves both.

A few lines of asyncio instead of a web framework: two read-only paths, small answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST


async def start_web(
    host: str, port: int, metrics: Callable[[], bytes], healthy: Callable[[], bool]
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                for _ in range(100):  # headers, up to the blank line
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
            parts = request.split()
            path = parts[1].split(b"?")[0] if len(parts) >= 2 else b""
            if parts[:1] != [b"GET"]:
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == b"/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics()
            elif path == b"/health/live":
                status, ctype, body = "200 OK", "text/plain", b"ok\n"
            elif path in (b"/health", b"/health/ready"):
                ok = healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "text/plain", b"ok\n" if ok else b"kafka is not acknowledging\n"
            else:
                paths = b"/metrics, /health, /health/ready or /health/live\n"
                status, ctype, body = "404 Not Found", "text/plain", paths
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_address=True)
