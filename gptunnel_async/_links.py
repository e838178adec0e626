"""Which result links may be fetched, judged on the address actually connected to.

A link's text says little: ``localhost.localdomain``, a name from ``/etc/hosts``, a cluster's
``*.svc`` or a 6to4 address all reach loopback or private hosts, and a name that resolved to a
public address a moment ago may resolve elsewhere on the next lookup (DNS rebinding). So a link
passes two checks: ``LinkPolicy.check`` on its text (scheme, literal addresses), then
``CheckedTransport`` resolves the host itself, refuses it unless *every* address it resolves to
is public, and connects to the address it checked (TLS still verifies the host name). Both run
on the first request and on every redirect.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx

from ._errors import UnsafeLinkError
from ._logs import clip

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``: how a link's host name is resolved (replaceable in tests).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")
# NAT64 prefixes (well-known and local-use): the low 32 bits name the IPv4 host reached. On an
# IPv6-only network with DNS64 every public host resolves into them.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def parse_address(host: str) -> Address | None:
    """The address a host literal names (legacy IPv4 forms included), or None for a name."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # The resolver also reads legacy IPv4 forms ("127.1", "2130706433", "0x7f000001"):
    # judge them by the address they really name.
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _translated_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host a NAT64 or 6to4 address reaches, if it is one."""
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a Teredo address leads to (IPv4-compatible ``::a.b.c.d`` is reserved,
    so refused on its own)."""
    return list(ip.teredo or ())


def _public(ip: Address) -> bool:
    # not is_global also covers shared space 100.64/10 (a cloud metadata address lives there).
    return ip.is_global and not (
        ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_loopback
    )


def address_problem(ip: Address, *, allow_loopback: bool) -> str | None:
    """Why a connection to ``ip`` is refused ("a loopback address", ...), or None if it is not.

    An IPv4-mapped address is judged as the IPv4 address it is; a NAT64 or 6to4 address by
    the IPv4 host it reaches, which must be public; a Teredo address must be public on both
    counts.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            # NAT64 and 6to4 lead to the IPv4 host they embed: judge that host (Python's own
            # view of 2002::/16 changed in 3.13; the embedded address is what matters).
            v4 = _translated_v4(ip)
            if v4 is not None:
                return None if _public(v4) else f"an address that embeds the non-public {v4}"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if not _public(ip):
        return "a private or reserved address"
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in _embedded_v4(ip):
            if not _public(v4):
                return f"an address that embeds the non-public {v4}"
    return None


def _name_is_loopback(host: str) -> bool:
    return host.lower().rstrip(".") == "localhost"  # "localhost." is localhost


def _name_is_private(host: str) -> bool:
    return host.lower().rstrip(".").endswith((".local", ".internal", ".localhost"))


@dataclass(frozen=True)
class LinkPolicy:
    """Which result links may be fetched. ``allow_loopback`` is on for the emulator (the API
    itself on loopback); ``allow_insecure`` accepts plain-http links to public hosts."""

    allow_insecure: bool = False
    allow_loopback: bool = False

    def check(self, url: str) -> httpx.URL:
        """The link's text: an http(s) URL whose host is not a refused literal or name."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise UnsafeLinkError(f"not a valid URL: {clip(repr(url), 200)}") from exc
        host = parsed.host
        if parsed.scheme not in ("http", "https") or not host:
            raise UnsafeLinkError(f"refusing a non-http(s) link: {clip(repr(url), 200)}")
        ip = parse_address(host)
        loopback = ip.is_loopback if ip is not None else _name_is_loopback(host)
        if ip is not None:
            problem = address_problem(ip, allow_loopback=self.allow_loopback)
            if problem is not None:
                raise UnsafeLinkError(f"refusing a link to {problem}: {clip(host, 100)}")
        elif loopback and not self.allow_loopback:
            raise UnsafeLinkError(f"refusing a link to a loopback address: {clip(host, 100)}")
        elif _name_is_private(host):
            raise UnsafeLinkError(f"refusing a link to a private address: {clip(host, 100)}")
        if parsed.scheme == "http" and not (self.allow_insecure or loopback):
            raise UnsafeLinkError(
                f"refusing a plain-http link to {clip(host, 100)} "
                "(pass allow_insecure=True to accept it)"
            )
        return parsed

    def check_resolved(self, host: str, addresses: list[str]) -> list[Address]:
        """Every address ``host`` resolved to, each checked; one refused refuses them all."""
        checked: list[Address] = []
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("%eth0")
            problem = address_problem(ip, allow_loopback=self.allow_loopback)
            if problem is not None:
                raise UnsafeLinkError(
                    f"refusing a link to {clip(host, 100)}: it resolves to {problem} ({ip})"
                )
            if ip not in checked:
                checked.append(ip)
        if not checked:
            raise UnsafeLinkError(f"refusing a link to {clip(host, 100)}: it resolves to nothing")
        return checked


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (``/etc/hosts`` included)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class CheckedTransport(httpx.AsyncBaseTransport):
    """Resolves each request's host, checks every address, and connects to a checked one.

    The request keeps its ``Host`` header and TLS its server name (SNI and certificate check
    use the link's host), so only the connection's target changes: from a name that might
    resolve anywhere to the address that was judged.
    """

    def __init__(
        self,
        policy: LinkPolicy,
        *,
        resolver: Resolver | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver or system_resolver
        # No keep-alive: a pool keyed by address would let one host's TLS connection carry a
        # request for another name on the same address, unverified.
        self._inner = inner or httpx.AsyncHTTPTransport(
            trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"resolving {host} timed out", request=request) from None
        except OSError as exc:  # socket.gaierror: the name does not resolve
            raise httpx.ConnectError(
                f"cannot resolve {host}: {exc.strerror or exc}", request=request
            ) from None
        checked = self._policy.check_resolved(host, addresses)
        if parse_address(host) is None and request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        original = request.url
        failure: httpx.TransportError | None = None
        for ip in checked:
            request.url = original.copy_with(host=str(ip))
            try:
                return await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = exc  # the next address of the same host may answer
            finally:
                request.url = original
        assert failure is not None  # check_resolved never returns an empty list
        raise failure

    async def aclose(self) -> None:
        await self._inner.aclose()
