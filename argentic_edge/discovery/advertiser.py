"""Advertising our own record: registered under a free name, kept current, withdrawn with a
goodbye."""

from __future__ import annotations

import logging
from collections.abc import Callable

from zeroconf import NonUniqueNameException, ServiceInfo, ServiceNameAlreadyRegistered
from zeroconf.asyncio import AsyncZeroconf

from argentic_edge.discovery.record import Record, instance_name
from argentic_edge.errors import EdgeError

log = logging.getLogger(__name__)

RENAME_ATTEMPTS = 16


class DiscoveryError(EdgeError):
    """Advertising failed at runtime (no free name): logged by the service, never fatal."""


class Advertiser:
    """Registers our Record, renaming on a conflict as mDNS asks ("name (2)"), and keeps it
    current: ``refresh()`` re-reads the advert (addresses, certificate) and re-announces."""

    def __init__(self, azc: AsyncZeroconf, source: Callable[[], Record]) -> None:
        self.azc = azc
        self.source = source
        self.registered: ServiceInfo | None = None
        self.advert: Record | None = None

    @property
    def name(self) -> str | None:
        return instance_name(self.registered.name) if self.registered else None

    async def refresh(self) -> None:
        advert = self.source()
        if advert == self.advert:
            return
        if not advert.addresses:
            if self.advert is None:
                log.warning(
                    "discovery: no IPv4 address to advertise yet; will advertise when one appears"
                )
                self.advert = advert
            return
        if (
            self.registered is not None
            and self.advert is not None
            and advert.name == self.advert.name
        ):
            info = advert.service_info(instance_name(self.registered.name))
            await self.azc.async_update_service(info)
            self.registered, self.advert = info, advert
            log.info("discovery: advertisement updated (%s)", ", ".join(advert.addresses))
            return
        if self.registered is not None:
            await self.azc.async_unregister_service(self.registered)
            self.registered = None
        self.registered = await self._register(advert)
        self.advert = advert

    async def _register(self, advert: Record) -> ServiceInfo:
        for attempt in range(1, RENAME_ATTEMPTS + 1):
            instance = advert.name if attempt == 1 else f"{advert.name} ({attempt})"
            info = advert.service_info(instance)
            try:
                await self.azc.async_register_service(info)
            except (NonUniqueNameException, ServiceNameAlreadyRegistered):
                log.warning("discovery: the name %r is taken on this LAN; trying another", instance)
                continue
            log.info("discovery: advertising %r on %s", instance, ", ".join(advert.addresses))
            return info
        raise DiscoveryError(
            f"no free mDNS name after {RENAME_ATTEMPTS} tries of "
            f"{advert.name!r}; set a distinct node_name"
        )

    async def stop(self) -> None:
        """Say goodbye, so peers drop us at once instead of waiting for the liveness check."""
        if self.registered is not None:
            await self.azc.async_unregister_all_services()
            log.info("discovery: said goodbye as %r", self.name)
            self.registered = None
