"""A tiny programmable DNS server over UDP, for the answers dnsmasq will not give.

Runs as greenlets inside a gevent-patched scenario process. Behaviour by query name:
- `servfail.*` and the MX of `mxfail.stub` -> SERVFAIL (the A of `mxfail.stub` is 10.0.9.9)
- `silent.*` -> no answer at all
- `slow.*` -> an A answer after SLOW seconds
- `partial.stub` MX -> 10 slow.partial.stub, 20 fast.partial.stub
- `soa-nx.stub` -> NXDOMAIN with an SOA (TTL 100, minimum 45) in the authority section
- any other A question -> 10.0.9.<n>, TTL 60
`queries` records every (name, type) asked.
"""

from __future__ import annotations

import socket

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import gevent

SLOW = 1.0


class StubServer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self._loop = gevent.spawn(self._serve)

    def close(self) -> None:
        self._loop.kill()
        self.sock.close()

    def _serve(self) -> None:
        while True:
            data, peer = self.sock.recvfrom(4096)
            gevent.spawn(self._answer, data, peer)

    def _answer(self, data: bytes, peer) -> None:
        q = dns.message.from_wire(data)
        question = q.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rtype))
        r = dns.message.make_response(q)
        if name.startswith("silent."):
            return
        if name.startswith("servfail.") or (name == "mxfail.stub" and rtype == "MX"):
            r.set_rcode(dns.rcode.SERVFAIL)
        elif name == "soa-nx.stub":
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(dns.rrset.from_text(
                "stub.", 100, "IN", "SOA", "ns.stub. hostmaster.stub. 1 1200 120 604800 45"))
        elif name == "partial.stub" and rtype == "MX":
            r.answer.append(dns.rrset.from_text("partial.stub.", 60, "IN", "MX",
                                                "10 slow.partial.stub.", "20 fast.partial.stub."))
        elif rtype == "A":
            if name.startswith("slow."):
                gevent.sleep(SLOW)
            n = 1 + sum(map(ord, name)) % 250
            r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", f"10.0.9.{n}"))
            if name == "mxfail.stub":
                r.answer[-1] = dns.rrset.from_text(question.name, 60, "IN", "A", "10.0.9.9")
        self.sock.sendto(r.to_wire(), peer)
