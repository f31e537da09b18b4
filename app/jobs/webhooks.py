"""Webhooks as the Standard Webhooks specification has them (https://www.standardwebhooks.com/, as OpenAI's
own webhooks): the body, its signature and headers, and which addresses deliveries may go to.

    webhook-id:        msg_<random>, the same on every attempt of one event (receivers de-duplicate on it)
    webhook-timestamp: Unix seconds of the attempt
    webhook-signature: v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">, keyed by the base64-decoded
                       part of the secret after `whsec_`

SSRF: a webhook URL makes this service send a request wherever a client says. `allowed` names the hosts and
networks deliveries may reach; every address the host name resolves to is checked right before each attempt
(not only the name), and redirects are never followed. With an empty allow-list any address is allowed:
set MEGA_ASR_WEBHOOK_ALLOWED_HOSTS on any deployment that untrusted clients can reach.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from app.errors import InvalidRequest

EVENT_TYPES = {"completed": "transcription.job.completed", "failed": "transcription.job.failed",
               "cancelled": "transcription.job.cancelled"}
_MAX_URL = 2048


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def event_body(job_id: str, status: str, metadata: dict[str, str], now: float | None = None) -> str:
    """The delivery's body: {"type", "timestamp", "data": {"id", "status", "metadata"}}; `timestamp` is when
    the job ended, in ISO 8601 as the specification's payload has it (the webhook-timestamp header is the
    attempt's time, in Unix seconds)."""
    moment = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    return json.dumps({"type": EVENT_TYPES[status], "timestamp": moment.isoformat(timespec="milliseconds")
                       .replace("+00:00", "Z"), "data": {"id": job_id, "status": status, "metadata": metadata}},
                      separators=(",", ":"))


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the key decoded from `whsec_<base64>`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body), "content-type": "application/json",
            "user-agent": "mega-asr-webhooks/1"}


@dataclass(frozen=True)
class Allowed:
    """Host names and networks deliveries may go to; empty = anywhere."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowed:
        names, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    @property
    def anything(self) -> bool:
        return not self.names and not self.networks

    def name_allowed(self, host: str) -> bool:
        return self.anything or host.lower().rstrip(".") in self.names

    def addresses_allowed(self, host: str, addresses: Sequence[str]) -> bool:
        """A named host passes by name; otherwise every address it resolves to must be in an allowed network."""
        if self.anything or host.lower().rstrip(".") in self.names:
            return True
        return bool(addresses) and all(any(ipaddress.ip_address(a) in net for net in self.networks)
                                       for a in addresses)


def check_url(url: str, allowed: Allowed) -> str:
    """Refuse (400, param webhook_url) what can never be delivered: not http(s), no host, credentials in the
    URL, or a host outside the allow-list. Addresses are checked again at every delivery (DNS can change)."""
    if len(url) > _MAX_URL:
        raise InvalidRequest(f"webhook_url is longer than {_MAX_URL} characters", param="webhook_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("webhook_url is not a valid URL", param="webhook_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook_url must be an absolute http:// or https:// URL", param="webhook_url")
    if parts.username or parts.password:
        raise InvalidRequest("webhook_url must not carry credentials", param="webhook_url")
    if port == 0:
        raise InvalidRequest("webhook_url has an invalid port", param="webhook_url")
    host = parts.hostname
    literal = _literal_address(host)
    # A name outside the listed names may still resolve into a listed network: that is decided at delivery.
    ok = allowed.addresses_allowed(host, [literal]) if literal else (
        allowed.name_allowed(host) or bool(allowed.networks))
    if not ok:
        raise InvalidRequest(f"webhook host {host!r} is not in MEGA_ASR_WEBHOOK_ALLOWED_HOSTS", param="webhook_url",
                             code="webhook_host_not_allowed")
    return url


def _literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (blocking: called on a thread)."""
    literal = _literal_address(host)
    if literal:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})
