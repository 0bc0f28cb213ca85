"""Assemble metering: the store, the usage consumer, the query endpoint.

``byom.metering.usage`` answers two kinds of query: usage totals (the
contract's query) and, with ``"view": "limits"``, a model's usage against
its rate limits per minute (docs/metering.md). Metering follows the
registry stream for the limits, like the router and the limiter.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.metering.consumer import UsageConsumer
from services.metering.headroom import headroom
from services.metering.queries import usage_rows
from services.metering.store import StoreError, UsageStore
from shared.contracts.usage import HeadroomQuery, UsageQuery
from shared.errors import Forbidden, Unavailable
from shared.registry_view import RegistryFollower
from shared.service import Service
from shared.settings import Settings
from shared.transport import Call, invalid_from_validation

Query = TypeVar("Query", bound=BaseModel)


def _parse(model: type[Query], body: dict[str, Any]) -> Query:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from exc


class Metering:
    """Store usage events and answer usage queries."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.store = UsageStore(service.settings.data_dir / "metering.sqlite3")
        self.consumer: UsageConsumer | None = None
        self.follower: RegistryFollower | None = None

    async def start(self) -> None:
        service = self._service
        await self.store.start()
        self.follower = RegistryFollower(service.nc, service.subjects)
        await self.follower.start()
        self.consumer = UsageConsumer(
            service.js,
            service.subjects,
            self.store,
            service.metrics,
            replica=service.settings.metering_replica,
        )
        await self.consumer.start()
        # Answer queries only from a whole copy (docs/metering.md, Replicas).
        await self.consumer.wait_caught_up()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.follower is not None:
            await self.follower.stop()
        await self.store.stop()

    def registry_version(self) -> int:
        return self.follower.view.version if self.follower else 0

    async def usage(self, call: Call) -> dict[str, Any]:
        try:
            if call.body.get("view") is not None:
                return await self._headroom(call)
            query = _parse(UsageQuery, call.body)
            return {"rows": await usage_rows(self.store, query, call.caller)}
        except StoreError as exc:
            raise Unavailable(
                "the usage database cannot answer right now; try again shortly"
            ) from exc

    async def _headroom(self, call: Call) -> dict[str, Any]:
        if not call.caller.is_admin:
            raise Forbidden(
                "usage against limits is for enrollment administrators; "
                "query your own usage without 'view'"
            )
        query = _parse(HeadroomQuery, call.body)
        if self.follower is None:
            raise RuntimeError("metering is not started")
        return await headroom(self.store, self.follower.view, query)


def build(settings: Settings) -> Service:
    service = Service("metering", settings)
    metering = Metering(service)
    service.components.append(metering)
    service.registry_version = metering.registry_version
    service.serve(service.subjects.metering_usage, metering.usage)
    return service
