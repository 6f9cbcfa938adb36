"""Keyword arguments of every aiokafka client airgrid makes, from the settings."""

from __future__ import annotations

from airgrid.config.settings import Settings


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """aiokafka keyword arguments for the configured security settings."""
    opts: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.broker_security_protocol,
    }
    if "SASL" in settings.broker_security_protocol:
        opts["sasl_mechanism"] = settings.broker_sasl_mechanism
        opts["sasl_plain_username"] = settings.broker_username
        opts["sasl_plain_password"] = (
            settings.broker_password.get_secret_value() if settings.broker_password else None
        )
    if "SSL" in settings.broker_security_protocol:
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=str(settings.broker_cafile) if settings.broker_cafile else None
        )
    return opts
