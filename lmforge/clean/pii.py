"""Mask personal data: e-mail addresses, public IP addresses and phone numbers.

Like datatrove's PIIFormatter (used for FineWeb), only public IPs are masked: private, loopback
and link-local addresses such as 127.0.0.1 or 192.168.0.1 are common in technical text and
identify no one. The patterns are strict on purpose, so that version numbers (3.11.7), dates
(2024-01-31) and code survive: an IPv4 needs four dotted octets that ``ipaddress`` accepts, not
all one digit and not after "version", "-", "=" or "/"; an IPv6 needs three groups and a digit;
a phone number needs a leading ``+`` and 8-15 digits, or the North American (555) 123-4567 shape.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"  # +82-2-1234-5678
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4})(?![\w.-]*\d)"  # (555) 123-4567, 555-123-4567
)
# "version 3.11.7.2", "novas-1.0.0.1", "Firefox/2.0.0.11" have the shape of an IPv4 address;
# what comes before says they are not one.
_VERSION_WORD = re.compile(r"(?i)(?:version|release|build|python|zlib|\bv|\bver\.?|[-=/])\s*$")
MASKS = {"email": "<EMAIL>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}


def mask_pii(text: str, counts: Counter | None = None, kinds: tuple[str, ...] = ("email", "ip", "phone")) -> str:
    """``text`` with the ``kinds`` of e-mails, public IPs and phone numbers replaced; ``counts``
    gets masks per kind.

    >>> mask_pii("Mail bob@example.org from 93.184.216.34 or call +1 415 555 0100; Python 3.11.7 on 127.0.0.1.")
    'Mail <EMAIL> from <IP_ADDRESS> or call <PHONE>; Python 3.11.7 on 127.0.0.1.'
    """
    counts = counts if counts is not None else Counter()
    if "email" in kinds:
        text = _sub(EMAIL, text, "email", counts)
    if "ip" in kinds:
        text = _sub(IPV4, text, "ip", counts, _public_ip)
        text = _sub(IPV6, text, "ip", counts, _public_ipv6)
    if "phone" in kinds:
        text = _sub(PHONE, text, "phone", counts, _phone_digits_ok)
    return text


def _sub(pattern: re.Pattern, text: str, kind: str, counts: Counter, check=None) -> str:
    def replace(match: re.Match) -> str:
        if check is not None and not check(match.group(0), text, match.start()):
            return match.group(0)
        counts[kind] += 1
        return MASKS[kind]

    return pattern.sub(replace, text)


def _public_ip(candidate: str, text: str, start: int) -> bool:
    if _VERSION_WORD.search(text, max(0, start - 20), start):
        return False
    if "." in candidate and all(len(part) == 1 for part in candidate.split(".")):
        return False  # 1.2.3.4-style: section and version numbers; hosts rarely have four one-digit parts
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


def _public_ipv6(candidate: str, text: str, start: int) -> bool:
    # Three groups at least, one with a digit: "8::" (reST "UTF-8::") or "dead::beef" are not addresses.
    groups = [g for g in candidate.split(":") if g]
    return len(groups) >= 3 and any(ch.isdigit() for ch in candidate) and _public_ip(candidate, text, start)


def _phone_digits_ok(candidate: str, text: str, start: int) -> bool:
    # E.164 numbers have at most 15 digits; fewer than 8 is more likely a reference or a count.
    return 8 <= sum(ch.isdigit() for ch in candidate) <= 15
