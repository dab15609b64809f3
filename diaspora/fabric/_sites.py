"""A running hierarchical fabric: one server per site, joined by leaf links.

:class:`Sites` checks the whole topology before it starts anything (see
:func:`~diaspora.fabric._sitespec.check_sites`), then checks every site that
has a ``url`` (reachable, and its JetStream reports the declared domain: a
typo'd domain otherwise fails silently), starts the embedded servers parents
first, each with its store under ``<state_dir>/<site>/jetstream`` (a rerun
with the same ``state_dir`` resumes its streams), waits until each leaf link
answers JetStream requests both ways, and stops them children first.

>>> import anyio
>>> from diaspora.fabric import Fabric, SiteSpec
>>> async def main() -> None:
...     specs = [SiteSpec("edge", domain="edge", parent="hpc"), SiteSpec("hpc", domain="hpc")]
...     async with Sites(specs) as sites, sites.fabric("hpc") as fabric:
...         edge = sites.view(fabric, "edge")      # the edge's JetStream, from the hpc
...         await edge.ensure_stream("edge.ev")
...         print((await edge.publish("edge.ev", {"n": 1})).domain)
>>> anyio.run(main)
edge
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import anyio
import nats.errors
from nats.aio.client import Client as NATS

from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.fabric import _jsapi
from diaspora.fabric._auth import Auth, refusal
from diaspora.fabric._connection import split_urls
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._leafnodes import LeafRemote, leaf_url
from diaspora.fabric._linkcontrol import LinkControl
from diaspora.fabric._linkproxy import LinkProxy
from diaspora.fabric._server import EmbeddedServer, free_port
from diaspora.fabric._sitesecurity import (
    leaf_remote,
    link_refused,
    refused_error,
    server_accounts,
)
from diaspora.fabric._sitespec import SiteSpec, check_sites
from diaspora.fabric._siteview import SiteView
from diaspora.log import get_logger

__all__ = ["Site", "Sites"]


@dataclass(frozen=True, slots=True)
class Site:
    """One running site: where clients connect, where children's leaf links connect."""

    name: str
    domain: str
    #: Client URL (``nats://...``) of the site's server.
    url: str
    #: Where child sites' leaf links connect (``None``: a url site declared without one).
    leaf_url: str | None
    parent: str | None
    #: The embedded server (``None`` for a site with a ``url``), for tests to stop or kill.
    server: EmbeddedServer | None = None
    #: The proxy on the uplink to the parent (``link_proxy=True``), obeying fault orders.
    proxy: LinkProxy | None = None


class Sites:
    """The servers of a hierarchical fabric, for the lifetime of an ``async with``.

    ``state_dir`` holds each embedded site's store (default: a temporary
    directory, deleted on exit). ``connect_timeout`` bounds each check of a
    site with a url, ``link_timeout`` the wait for each leaf link.
    """

    def __init__(
        self,
        specs: Iterable[SiteSpec],
        *,
        state_dir: str | Path | None = None,
        connect_timeout: float = 5.0,
        link_timeout: float = 30.0,
        binary: str | Path | None = None,
    ) -> None:
        self._order = check_sites(specs)  # before anything starts: a bad graph starts nothing
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._own_state = False
        self.connect_timeout = connect_timeout
        self.link_timeout = link_timeout
        self._binary = binary
        self._sites: dict[str, Site] = {}
        #: the link proxies and their controls, closed before the servers
        self._links = contextlib.AsyncExitStack()
        self._log = get_logger(sites=",".join(s.name for s in self._order))

    # -- lookup ---------------------------------------------------------------------

    def __getitem__(self, name: str) -> Site:
        try:
            return self._sites[name]
        except KeyError:
            known = ", ".join(s.name for s in self._order)
            state = "" if self._sites else " (the sites are not started: use `async with`)"
            raise ConfigError(f"no site {name!r} is running{state}; sites: {known}") from None

    def __iter__(self) -> Iterator[Site]:
        return iter(list(self._sites.values()))

    @property
    def names(self) -> list[str]:
        """The site names, parents before children."""
        return [s.name for s in self._order]

    def fabric(self, name: str, **options: Any) -> Fabric:
        """A :class:`Fabric` connected to site ``name`` (enter it with ``async with``)."""
        options.setdefault("name", f"diaspora-{name}")
        site = self[name]  # an unknown name is named before anything else
        options.setdefault("auth", self._spec(name).auth)
        return Fabric(site.url, **options)

    def view(self, fabric: Fabric, name: str) -> SiteView:
        """``fabric``'s streams, KV and object stores in site ``name``'s JetStream domain."""
        return SiteView(fabric, self[name].domain)

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Check the url sites, start the embedded ones parents first, wait for every link."""
        if self._sites:
            raise RuntimeError("Sites already started")
        running: dict[str, Site] = {}  # the url sites, checked before anything starts
        for spec in self._order:
            if not spec.embedded:
                running[spec.name] = site = await self._check_url_site(spec)
                if spec.parent is not None:  # a url parent: check_sites refused an embedded one
                    await self._await_link(site, running[spec.parent], self.connect_timeout)
            elif spec.parent is not None and self._spec(spec.parent).leaf_url is not None:
                await self._check_leaf_listener(spec, self._spec(spec.parent))
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="diaspora-sites-"))
            self._own_state = True
        try:
            for spec in self._order:
                if not spec.embedded:
                    self._sites[spec.name] = running[spec.name]
                    continue
                self._sites[spec.name] = await self._start_site(spec)
                if spec.parent is not None:
                    await self.wait_linked(spec.name)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the embedded servers, children first (stores are kept in ``state_dir``)."""
        # first the proxies and controls: their task groups must close outside a new scope
        links, self._links = self._links, contextlib.AsyncExitStack()
        await links.aclose()
        with anyio.CancelScope(shield=True):
            for name in reversed(list(self._sites)):
                site = self._sites.pop(name)
                if site.server is not None:
                    await site.server.close()
            if self._own_state and self._state_dir is not None:
                shutil.rmtree(self._state_dir, ignore_errors=True)
                self._state_dir, self._own_state = None, False

    async def wait_linked(self, name: str, timeout: float | None = None) -> None:
        """Return once site ``name`` and its parent answer each other's ``$JS.<domain>.API.INFO``.

        Raises :class:`FabricUnavailable` naming both sites after ``timeout``
        (default ``link_timeout``); a site without a parent returns at once.
        """
        site = self[name]
        if site.parent is not None:
            await self._await_link(site, self[site.parent], timeout)

    # -- internals ------------------------------------------------------------------

    async def _await_link(self, site: Site, parent: Site, timeout: float | None) -> None:
        deadline = time.monotonic() + (self.link_timeout if timeout is None else timeout)
        server = site.server

        def refused() -> bool:  # the parent said no to the link's credentials: no use waiting
            if server is None or not link_refused(server.log_path.read_text(errors="replace")):
                return False
            raise refused_error(self._spec(site.name), self._spec(parent.name))

        for here, there in ((site, parent), (parent, site)):
            where = f"sites.{here.name}"
            nc = await _connect(here.url, self.connect_timeout, where, self._spec(here.name).auth)
            try:
                answered = await _reaches(nc, there.domain, deadline, refused)
            finally:
                await _close(nc)
            if not answered:
                server = site.server or parent.server
                tail = f"; log tail ({server.log_path}):\n{server.log_tail()}" if server else ""
                raise FabricUnavailable(
                    f"sites.{site.name}: the leaf link to parent {parent.name!r} "
                    f"({parent.leaf_url}) is not up: site {here.name!r} got no answer from "
                    f"$JS.{there.domain}.API.INFO; is the parent's leafnodes listener at "
                    f"that URL and its domain {parent.domain!r}?{tail}"
                )
        self._log.info("site_linked", site=site.name, parent=parent.name)

    def _spec(self, name: str) -> SiteSpec:
        return next(s for s in self._order if s.name == name)

    async def _start_site(self, spec: SiteSpec) -> Site:
        assert self._state_dir is not None
        store = spec.store_dir or self._state_dir / spec.name / "jetstream"
        remotes: list[LeafRemote] = []
        proxy: LinkProxy | None = None
        if spec.parent is not None:
            remote = self[spec.parent].leaf_url
            assert remote is not None  # check_sites refused a parent without one
            if spec.link_proxy:
                port = urlsplit(remote).port
                assert port is not None
                proxy = await self._links.enter_async_context(LinkProxy(port))
                remote = leaf_url(proxy.port)
            remotes.append(leaf_remote(remote, spec))
        server = EmbeddedServer(
            store_dir=store,
            name=spec.name,
            jetstream_domain=spec.domain,
            leaf_port=free_port(),
            leaf_remotes=remotes,
            accounts=server_accounts(spec),
            binary=self._binary,
        )
        try:
            await server.start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await server.close()
            raise
        self._log.info("site_started", site=spec.name, domain=spec.domain, url=server.url)
        if proxy is not None:  # orders reach the control on the site's own server
            fabric = await self._links.enter_async_context(
                Fabric(server.url, name=f"link-control-{spec.name}", auth=spec.auth)
            )
            await self._links.enter_async_context(LinkControl(fabric, spec.name, proxy))
        return Site(spec.name, spec.domain, server.url, server.leaf_url, spec.parent, server, proxy)

    async def _check_url_site(self, spec: SiteSpec) -> Site:
        """The running site at ``spec.url``, once it answers as JetStream domain ``spec.domain``."""
        assert spec.url is not None
        where = f"sites.{spec.name}"
        nc = await _connect(spec.url, self.connect_timeout, where, spec.auth)
        try:
            answer = await _info(nc, None, self.connect_timeout)
        finally:
            await _close(nc)
        if answer is None or "error" in answer:
            raise ConfigError(
                f"{where}.url: the server at {spec.url} has no JetStream answering "
                f"({answer}); enable JetStream with domain {spec.domain!r} there"
            )
        actual = answer.get("domain") or None
        if actual != spec.domain:
            raise ConfigError(
                f"{where}.domain: declared {spec.domain!r}, but the server at {spec.url} "
                f"reports JetStream domain {actual!r}; fix the declaration or the server "
                "(a wrong domain fails silently: requests to it reach nobody)"
            )
        return Site(spec.name, spec.domain, spec.url, spec.leaf_url, spec.parent)

    async def _check_leaf_listener(self, spec: SiteSpec, parent: SiteSpec) -> None:
        assert parent.leaf_url is not None
        parts = urlsplit(parent.leaf_url)
        assert parts.hostname is not None
        assert parts.port is not None
        try:
            with anyio.fail_after(self.connect_timeout):
                stream = await anyio.connect_tcp(parts.hostname, parts.port)
            await stream.aclose()
        except (OSError, TimeoutError) as exc:
            raise FabricUnavailable(
                f"sites.{spec.name}.parent: cannot reach the leafnodes listener of site "
                f"{parent.name!r} at {parent.leaf_url} ({exc!r}); is its server up and "
                "its leaf_url right?"
            ) from None


async def _connect(url: str, timeout: float, where: str, auth: Auth | None) -> NATS:
    """A short-lived probe client (no reconnects); :class:`FabricUnavailable` names ``where``."""
    nc = NATS()
    options = auth.connect_options() if auth is not None else {}

    async def quiet(exc: Exception) -> None:
        return None

    try:
        with anyio.fail_after(timeout):
            await nc.connect(
                **options,
                servers=split_urls(url),
                name="diaspora-sites",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=max(1, int(timeout)),
                error_cb=quiet,
            )
    except Exception as exc:
        await _close(nc)
        if (refused := refusal(exc, split_urls(url), auth)) is not None:
            raise type(refused)(f"{where}: {refused}") from None
        raise FabricUnavailable(
            f"{where}.url: cannot reach NATS at {url} within {timeout}s ({exc!r}); start "
            "the site's server, fix the url, or omit it to start an embedded one"
        ) from None
    return nc


async def _close(nc: NATS) -> None:
    try:
        await nc.close()
    except Exception:  # a probe that never connected has nothing to close
        return


async def _info(nc: NATS, domain: str | None, timeout: float) -> dict[str, Any] | None:
    """The answer to ``$JS[.<domain>].API.INFO``, or ``None`` when nobody answers in time."""
    try:
        msg = await nc.request(_jsapi.info_subject(domain), b"", timeout=timeout)
        answer = json.loads(msg.data)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


async def _reaches(
    nc: NATS, domain: str, deadline: float, refused: Callable[[], bool] = lambda: False
) -> bool:
    """Whether ``domain``'s JetStream answers (as that domain) through ``nc`` in time
    (``refused`` may raise to stop waiting on a link that cannot come up)."""
    delay = 0.02
    while True:
        left = deadline - time.monotonic()
        answer = await _info(nc, domain, max(0.05, min(left, 1.0)))
        if answer is not None and answer.get("domain") == domain:
            return True
        if refused() or time.monotonic() + delay > deadline:
            return False
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.25)
