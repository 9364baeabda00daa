"""Where a delivery goes: configured destinations and routes back to the sender.

A delivery row names its destination; the route (address, TLS, the kinds of
object it takes) is looked up in the current settings at every attempt, so an
administrator who fixes a destination and runs ``resend`` is heard.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.settings import RETURN_PREFIX, DeliverySettings, DestinationTls


@dataclass(frozen=True)
class Route:
    """A destination as the sender needs it."""

    name: str
    called_ae: str
    host: str
    port: int
    tls: DestinationTls
    objects: tuple[str, ...]
    return_to_ae: str | None = None

    def takes(self, kind: str) -> bool:
        """Whether objects of ``kind`` (sr, seg, key_image) go to this destination now."""
        return kind in self.objects

    def describe(self) -> str:
        tls = ", TLS" if self.tls.enabled else ""
        return f"{self.name} ({self.called_ae} at {self.host}:{self.port}{tls})"


def return_name(calling_ae: str) -> str:
    return f"{RETURN_PREFIX}{calling_ae.strip()}"


def routes_for(settings: DeliverySettings, calling_ae: str | None) -> list[Route]:
    """Every enabled destination, plus the way back to ``calling_ae`` when one is configured."""
    routes = [
        Route(d.name, d.ae_title, d.host, d.port, d.tls, tuple(d.objects))
        for d in settings.destinations if d.enabled
    ]
    if calling_ae is not None and settings.return_to_sender.enabled:
        back = return_route(settings, calling_ae)
        if back is not None:
            routes.append(back)
    return routes


def return_route(settings: DeliverySettings, calling_ae: str) -> Route | None:
    """The route back to ``calling_ae``, or None if it has none (or returning is off)."""
    title = calling_ae.strip()
    rts = settings.return_to_sender
    if not rts.enabled:
        return None
    for route in rts.routes:
        if route.ae_title.strip() == title:
            return Route(return_name(title), route.called_ae_title or route.ae_title, route.host,
                         route.port, route.tls, tuple(rts.objects), return_to_ae=title)
    return None


def resolve(settings: DeliverySettings, destination: str, return_to_ae: str | None) -> Route | None:
    """The current route of a delivery's destination, or None if it is no longer configured."""
    if return_to_ae is not None:
        return return_route(settings, return_to_ae)
    for d in settings.destinations:
        if d.name == destination and d.enabled:
            return Route(d.name, d.ae_title, d.host, d.port, d.tls, tuple(d.objects))
    return None


def route_named(settings: DeliverySettings, name: str) -> Route | None:
    """The route of a destination by the name deliveries carry (``return:<AE title>`` included)."""
    return_to = name.removeprefix(RETURN_PREFIX) if name.startswith(RETURN_PREFIX) else None
    return resolve(settings, name, return_to)


def destination_names(settings: DeliverySettings) -> list[str]:
    """The names of every enabled destination and route back to a sender."""
    names = [d.name for d in settings.destinations if d.enabled]
    if settings.return_to_sender.enabled:
        names += [return_name(route.ae_title) for route in settings.return_to_sender.routes]
    return names
