"""Which bundle answers a name, and whether it answers the route asked: the one owner of route support."""

from __future__ import annotations

from core.config import BundleConfig, Route
from core.errors import UnknownModelError, UnsupportedRouteError


def unsupported(bundle: BundleConfig, route: Route, name: str) -> UnsupportedRouteError:
    """The contract's 400 for `route` on a bundle that does not answer it (`name` as the client sent it)."""
    if route == "encode":
        return UnsupportedRouteError.encoding(name)
    if route == "prove":
        return UnsupportedRouteError.proving(name)
    if route == "complete":
        return UnsupportedRouteError.generation(name)
    if "prove" in bundle.routes:
        return UnsupportedRouteError.tactic_generation(name)
    return UnsupportedRouteError.generation(name)


class ModelRegistry:
    """Bundle lookup by name or alias, with each bundle's routes as its config gives them (BundleConfig.routes)."""

    def __init__(self, bundles: list[BundleConfig]):
        self.bundles = bundles
        self._by_name = {name: bundle for bundle in bundles for name in bundle.names}

    def find(self, name: str) -> BundleConfig | None:
        """The bundle called `name`, or None."""
        return self._by_name.get(name)

    def lookup(self, name: str) -> BundleConfig:
        """The bundle called `name` (or UnknownModelError, 404, listing the known names)."""
        bundle = self._by_name.get(name)
        if bundle is None:
            raise UnknownModelError.for_name(name, list(self._by_name))
        return bundle

    @staticmethod
    def check_route(bundle: BundleConfig, route: Route, name: str) -> None:
        """UnsupportedRouteError (400) unless `bundle` answers `route`."""
        if route not in bundle.routes:
            raise unsupported(bundle, route, name)

    def resolve(self, name: str, route: Route) -> BundleConfig:
        bundle = self.lookup(name)
        self.check_route(bundle, route, name)
        return bundle
