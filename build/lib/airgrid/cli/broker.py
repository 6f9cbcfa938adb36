"""Reaching Kafka from a command: say where when it takes a moment, give up in one line.

aiokafka waits ``request_timeout_ms`` (40 s) for a broker that accepts connections but does not
answer, logs its own errors and, when a start fails, leaves its client unclosed; a person at a
terminal saw 40 silent seconds and then three lines of noise. A command calls :func:`reach`
before it starts its clients: the broker answers within the connect timeout, or the command ends
with one line that names the broker, the setting and the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys

from airgrid.cli.base import UNREACHABLE, OpsError
from airgrid.config.settings import Settings

NOTICE_AFTER_S = 1.0
KAFKA_LOGGERS = ("aiokafka",)


def quiet_kafka_logs() -> None:
    """Only CRITICAL lines of the Kafka client (commands only; the worker logs everything)."""
    for name in KAFKA_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def where(s: Settings) -> str:
    return f"Kafka at {s.broker} (AIRGRID_BROKER)"


async def reach(s: Settings) -> None:
    """Return once a broker of ``s.broker`` answers a metadata request; else raise a one-line
    :class:`OpsError` (exit 1): refused at once, or silent for the connect timeout
    (``AIRGRID_BROKER_CONNECT_TIMEOUT_SECONDS``). After a moment, says on stderr what it waits for."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    from airgrid.kafka.client import kafka_client_options

    limit = s.broker_connect_timeout_seconds
    loop = asyncio.get_running_loop()
    notice = loop.call_later(NOTICE_AFTER_S, _say, f"airgrid: connecting to {where(s)}...")
    client = AIOKafkaClient(request_timeout_ms=int(limit * 1000), **kafka_client_options(s))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(limit):
            await client.bootstrap()
    except TimeoutError:
        raise OpsError(
            f"cannot reach {where(s)}: no answer within {limit:g} s (AIRGRID_BROKER_CONNECT_TIMEOUT_SECONDS)",
            UNREACHABLE,
        ) from None
    except KafkaError as exc:
        raise OpsError(f"cannot reach {where(s)}: {_cause(s, exc)}", UNREACHABLE) from None
    finally:
        notice.cancel()
        await client.close()


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _cause(s: Settings, exc: Exception) -> str:
    """Why no broker answered, in the words of the socket when it refused (aiokafka says only
    "Unable to bootstrap")."""
    from airgrid.models.codecs import first_line

    servers = s.bootstrap_servers.split(",")
    refused: dict[str, str] = {}
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                pass
        except OSError as err:
            refused[server] = err.strerror or type(err).__name__
    if not refused:  # they accept connections: aiokafka's reason it is (TLS, SASL, ...)
        return first_line(exc).removeprefix(f"{type(exc).__name__}: ")
    if len(servers) == 1:
        return refused[servers[0]]
    return "; ".join(f"{server}: {why}" for server, why in refused.items())
