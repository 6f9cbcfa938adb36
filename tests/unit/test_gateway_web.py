"""The gateway's HTTP endpoint: the worker's probe paths, metrics, and refusals."""

from __future__ import annotations

import asyncio

from airgrid.gateway.web import start_web
from airgrid.kafka.local import free_port


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_probes_follow_kafka_and_liveness_only_needs_an_answer() -> None:
    healthy = [True]
    port = free_port()
    server = await start_web("127.0.0.1", port, lambda: b"airgrid_gateway_up 1\n", lambda: healthy[0])
    try:
        assert await get(port, "/health") == (200, b"ok\n")
        assert await get(port, "/health/ready?verbose=1") == (200, b"ok\n")
        assert await get(port, "/metrics") == (200, b"airgrid_gateway_up 1\n")
        healthy[0] = False
        assert (await get(port, "/health"))[0] == 503
        assert (await get(port, "/health/ready"))[0] == 503
        assert await get(port, "/health/live") == (200, b"ok\n")  # alive, only not ready
        assert (await get(port, "/nope"))[0] == 404
        assert (await get(port, "/health", "POST"))[0] == 405
    finally:
        server.close()
        await server.wait_closed()
