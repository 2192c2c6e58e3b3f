"""Where a client connects: one server, a name that resolves to several, or a list of servers.

gRPC takes one target string per channel. One address (``host:port``) or any target URI gRPC
knows (``dns:///rnnlm-headless.default.svc:50051``, ``ipv4:...``, ``unix:...``) is passed as
it is. A list of servers (``["10.0.0.1:50051", "10.0.0.2:50051"]``, or the same joined by
commas, as ``rnnlm --target`` takes it) becomes gRPC's own address list, ``ipv4:a:p,b:p`` (or
``ipv6:``), whose host names are resolved once, here, to their addresses: a list is a fixed
set of servers, so a server that moves is not followed (a ``dns:///`` name is re-resolved by
gRPC whenever a connection drops). The channel's load-balancing policy (``round_robin``, see
``_retry``) spreads the calls over every address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

#: One server, several as a list, or several in one string separated by commas.
Target = str | Sequence[str]

#: Schemes of gRPC's name resolvers: a target starting with one is gRPC's to read.
GRPC_SCHEMES = frozenset(
    {"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p"}
)


def balancing(target: str) -> str:
    """The load-balancing policy for ``target``: ``round_robin`` over a list or a name
    gRPC resolves (which may be several servers), ``pick_first`` for one ``host:port``
    (gRPC's default there: a client started next to a server that is still coming up
    waits in the retry budget instead of failing fast on a refused subchannel)."""
    several = "," in target or target.split(":", 1)[0] in GRPC_SCHEMES
    return "round_robin" if several else "pick_first"


def target_text(target: Target) -> str:
    """``target`` as one string (a list joined by commas): what the client shows and the
    CLI's ``--target`` takes."""
    if isinstance(target, str):
        return target
    items = list(target) if isinstance(target, Sequence) else None
    if not items or not all(isinstance(t, str) for t in items):
        raise TypeError(
            f"target must be 'host:port', a gRPC target such as 'dns:///name:port', or a "
            f"non-empty list of 'host:port' strings; got {target!r}"
        )
    return ",".join(items)


def channel_target(target: str) -> str:
    """The string gRPC is given for ``target`` (see the module docstring)."""
    if "," not in target or target.partition(":")[0].lower() in GRPC_SCHEMES:
        return target
    addresses: list[tuple[int, str, int]] = []  # (family, ip, port)
    for item in target.split(","):
        for address in _addresses(item.strip(), target):
            if address not in addresses:
                addresses.append(address)
    families = {family for family, _, _ in addresses}
    if families == {socket.AF_INET}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for _, ip, port in addresses)
    if families == {socket.AF_INET6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for _, ip, port in addresses)
    raise ValueError(
        f"target list {target!r} mixes IPv4 and IPv6 addresses; gRPC takes one family per "
        "list: give addresses of one family, or one dns:/// name that resolves to all"
    )


def _addresses(item: str, whole: str) -> list[tuple[int, str, int]]:
    """The addresses of one ``host:port`` of a list: an IP literal's own, or a host name's
    IPv4 addresses (its IPv6 ones where it has no IPv4 address)."""
    host, port = _split(item, whole)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET if ip.version == 4 else socket.AF_INET6, str(ip), port)]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"target list {whole!r}: cannot resolve {host!r}: {err}") from None
    by_family: dict[int, list[tuple[int, str, int]]] = {}
    for family, _, _, _, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6):
            entry = (int(family), str(sockaddr[0]), port)
            if entry not in by_family.setdefault(family, []):
                by_family[family].append(entry)
    return by_family.get(socket.AF_INET) or by_family.get(socket.AF_INET6) or []


def _split(item: str, whole: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` into host and port; the port is required."""
    host, colon, port = item.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(
            f"target list {whole!r}: {item!r} is not host:port (each server of a list is "
            "host:port or [ipv6]:port, with a port in 1-65535; separate them by commas)"
        )
    return host, int(port)
