"""Assemble metering: the store, the usage consumer, the query endpoint."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.metering.consumer import UsageConsumer
from services.metering.queries import usage_rows
from services.metering.store import UsageStore
from shared.contracts.usage import UsageQuery
from shared.service import Service
from shared.settings import Settings
from shared.transport import Call, invalid_from_validation


class Metering:
    """Store usage events and answer usage queries."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.store = UsageStore(service.settings.data_dir / "metering.sqlite3")
        self.consumer: UsageConsumer | None = None

    async def start(self) -> None:
        await self.store.start()
        self.consumer = UsageConsumer(
            self._service.js, self._service.subjects, self.store
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await self.store.stop()

    async def usage(self, call: Call) -> dict[str, Any]:
        try:
            query = UsageQuery.model_validate(call.body)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from exc
        return {"rows": await usage_rows(self.store, query, call.caller)}


def build(settings: Settings) -> Service:
    service = Service("metering", settings)
    metering = Metering(service)
    service.components.append(metering)
    service.serve(service.subjects.metering_usage, metering.usage)
    return service
