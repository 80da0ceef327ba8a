"""Networks of their own for containers: a network namespace each, joined to a bridge on this
machine by a veth pair, with an address on the bridge's /24 and outbound traffic masqueraded
through the machine's own; an outbound allowlist is a firewall in the namespace.

Containers otherwise share the machine's network, where two of them cannot listen on one port;
a container with a network of its own has its whole port range, reached at its address from
this machine. A `Bridge` belongs to one runtime (its state dir names it): it takes a /24 of
SUBNETS that no address or route here covers at its first container, and leftovers of an
earlier process under the same name are cleared the same way as containers are.
"""

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass

from .sni_filter import Allowed, SniFilter
from .spec import ContainerError

SUBNETS = ipaddress.ip_network("10.233.0.0/16")  # where bridges take their /24s
NETNS_DIR = "/run/netns"  # where `ip netns` names namespaces
LOCK = "/run/shoal-bridges.lock"  # two runtimes choosing a /24 at once take turns
KEEP_IDLE = 8  # namespaces a bridge keeps for its next containers
# A kept namespace's firewall, emptied for a container with none
_OPEN = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


@dataclass(frozen=True)
class Attached:
    netns: str  # the namespace's path, for runc to join
    address: str  # the container's IPv4 address, reached from this machine


class Bridge:
    def __init__(self, state_dir: str):
        tag = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:6]
        self.name = f"shb{tag}"
        self._netns_prefix = f"shoal-{tag}-"
        self._veth_prefix = f"shv{tag}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._used: dict[str, int] = {}  # container id -> its host number on the subnet
        # Numbers whose namespace (with its veth and address) a container left, kept for the next:
        # making one costs a few ms and removing one tens, on a container's start and end.
        self._idle: list[int] = []
        self._firewalled: set[int] = set()  # numbers whose namespace has firewall rules
        self._setup = asyncio.Lock()
        self._sni = SniFilter()  # started at the first container with a domain allowlist

    async def attach(
        self, container_id: str, allowed: list[str] | None = None, domains: list[str] | None = None
    ) -> Attached:
        """A namespace for the container, on the bridge (made at the first one) with an address of
        its own. With `allowed` (IPv4 networks) or `domains` (server names, `*.` wildcards), its
        outbound connections may reach those networks alone (see _firewall), and TLS ones on port
        443 those names too (sni_filter.py)."""
        async with self._setup:
            if self.subnet is None:
                self.subnet = await asyncio.to_thread(self._make_bridge)
            if domains is not None and not self._sni.port:
                await self._sni.start(str(self.subnet[1]))
            if self._idle:
                number, made = self._idle.pop(), True
            else:
                taken = {*self._used.values()}
                number = next((n for n in range(2, self.subnet.num_addresses - 1) if n not in taken), None)
                if number is None:
                    raise ContainerError(f"no free address on {self.name} ({self.subnet})")
                made = False
            self._used[container_id] = number
        netns, address = self._netns(number), str(self.subnet[number])
        try:
            if not made:
                await self._make(number)
            if allowed is not None or domains is not None:
                rules = _firewall(allowed or [], domains is not None)
                await _run("ip", "netns", "exec", netns, "iptables-restore", stdin=rules)
                self._firewalled.add(number)
            elif number in self._firewalled:  # a namespace kept from a container that had one
                await _run("ip", "netns", "exec", netns, "iptables-restore", stdin=_OPEN)
                self._firewalled.discard(number)
            if domains is not None:
                self._sni.allowed[address] = Allowed(domains, allowed or [])
                await _run("iptables", *self._to_sni_filter("-A", address))
        except BaseException:
            await self.detach(container_id, keep=False)  # what was made of it
            raise
        return Attached(os.path.join(NETNS_DIR, netns), address)

    async def _make(self, number: int) -> None:
        netns, veth = self._netns(number), f"{self._veth_prefix}{number}"
        await _ip_batch(
            f"netns add {netns}",
            f"link add {veth} type veth peer name eth0 netns {netns}",
            f"link set {veth} master {self.name} up",
        )
        await _ip_batch(
            "link set lo up",
            f"addr add {self.subnet[number]}/{self.subnet.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {self.subnet[1]}",
            netns=netns,
        )

    async def detach(self, container_id: str, keep: bool = True) -> None:
        """The container's namespace is kept for the next one (up to KEEP_IDLE of them) or removed;
        nothing for a container that has none."""
        number = self._used.get(container_id)
        if number is None:
            return
        address = str(self.subnet[number])
        if self._sni.allowed.pop(address, None) is not None:
            await _run("iptables", *self._to_sni_filter("-D", address), check=False)
        if keep and len(self._idle) < KEEP_IDLE:
            del self._used[container_id]
            self._idle.append(number)
            return
        # The veth first: a namespace is destroyed lazily, and its pair with it.
        await _ip_batch(f"link del {self._veth_prefix}{number}", check=False)
        await _ip_batch(f"netns del {self._netns(number)}", check=False)
        self._firewalled.discard(number)
        del self._used[container_id]  # only now are its address and veth name free for another

    def _netns(self, number: int) -> str:
        return f"{self._netns_prefix}{number}"

    async def clear(self) -> None:
        """Every namespace, the bridge and its masquerade rule, this process's or an earlier one's."""
        for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []:
            if name.startswith(self._netns_prefix):
                await _ip_batch(f"netns del {name}", check=False)
        self._used.clear()
        self._idle.clear()
        self._firewalled.clear()
        self._sni.allowed.clear()
        await self._sni.close()
        for subnet in await asyncio.to_thread(self._bridge_subnets):
            await _run("iptables", *self._masquerade("-D", subnet), check=False)
        for rule in await asyncio.to_thread(self._redirects):
            await _run("iptables", "-t", "nat", "-D", *rule, check=False)
        await _ip_batch(f"link del {self.name}", check=False)
        self.subnet = None

    def _make_bridge(self) -> ipaddress.IPv4Network:
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = _free_subnet(_json("ip", "-j", "-4", "addr"), _json("ip", "-j", "-4", "route"))
            _sync("ip", "link", "add", self.name, "type", "bridge")
            _sync("ip", "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", self.name)
            _sync("ip", "link", "set", self.name, "up")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        _sync("iptables", *self._masquerade("-A", subnet))
        return subnet

    def _to_sni_filter(self, action: str, address: str) -> list[str]:
        """The rule sending a container's TLS connections (port 443) to the SNI filter."""
        return [
            *("-t", "nat", action, "PREROUTING", "-i", self.name, "-s", address),
            *("-p", "tcp", "--dport", "443", "-j", "REDIRECT", "--to-ports", str(self._sni.port)),
        ]

    def _redirects(self) -> list[list[str]]:
        """The rules sending this bridge's containers' TLS connections to an SNI filter (to remove)."""
        listed = _sync("iptables", "-t", "nat", "-S", "PREROUTING").splitlines()
        return [line.split()[1:] for line in listed if f" -i {self.name} " in f"{line} "]

    def _masquerade(self, action: str, subnet: ipaddress.IPv4Network) -> list[str]:
        return ["-t", "nat", action, "POSTROUTING", "-s", str(subnet), "!", "-o", self.name, "-j", "MASQUERADE"]

    def _bridge_subnets(self) -> list[ipaddress.IPv4Network]:
        try:
            links = _json("ip", "-j", "-4", "addr", "show", "dev", self.name)
        except ContainerError:
            return []  # no bridge
        return [
            ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            for link in links
            for a in link.get("addr_info", [])
        ]


def _firewall(allowed: list[str], tls: bool = False) -> str:
    """iptables rules (iptables-restore's input) in a container's namespace letting its outbound
    connections reach the `allowed` networks, its own loopback and the machine's name servers (DNS),
    and answer connections made to it; with `tls`, TLS ones on port 443 too (the machine sends them
    to the SNI filter); anything else is refused at once."""
    rules = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    for server in _name_servers():
        rules += [f"-A OUTPUT -d {server} -p {proto} --dport 53 -j ACCEPT" for proto in ("udp", "tcp")]
    rules += [f"-A OUTPUT -d {network} -j ACCEPT" for network in allowed]
    rules += ["-A OUTPUT -p tcp --dport 443 -j ACCEPT"] if tls else []
    rules += ["-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset", "-A OUTPUT -j REJECT", "COMMIT", ""]
    return "\n".join(rules)


def _name_servers() -> list[str]:
    """The IPv4 name servers of the machine's /etc/resolv.conf, which containers use too."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(fields[1]).version == 4:
                    found.append(fields[1])
    return found


def _free_subnet(addresses: list[dict], routes: list[dict]) -> ipaddress.IPv4Network:
    """The first /24 of SUBNETS that no address or route of this machine overlaps."""
    taken = [
        ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
        for link in addresses
        for a in link.get("addr_info", [])
    ]
    taken += [ipaddress.ip_network(r["dst"]) for r in routes if r.get("dst") not in (None, "default")]
    for subnet in SUBNETS.subnets(new_prefix=24):
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise ContainerError(f"every /24 of {SUBNETS} is in use on this machine")


async def _ip_batch(*commands: str, netns: str | None = None, check: bool = True) -> None:
    """`ip` commands in one process (`-n` for all of them when `netns` is given)."""
    await _run("ip", *(("-n", netns) if netns else ()), "-batch", "-", stdin="\n".join(commands) + "\n", check=check)


async def _run(*args: str, stdin: str = "", check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate(stdin.encode())
    if check and proc.returncode:
        raise ContainerError(f"{' '.join(args[:3])}: {err.decode(errors='replace').strip()}")


def _sync(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise ContainerError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _json(*args: str) -> list[dict]:
    return json.loads(_sync(*args) or "[]")
