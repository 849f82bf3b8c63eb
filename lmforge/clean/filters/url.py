"""Drop documents by URL: a domain blocklist (a domain blocks its subdomains too) and regexes."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from lmforge.clean.document import Document


class URLFilter:
    """``blocked_domain`` when the host is or is under a listed domain, ``blocked_url`` on a regex match."""

    name = "url"

    def __init__(self, domains: list[str] = (), patterns: list[str] = ()):
        self.domains = {d.lower().strip(".") for d in domains}
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, doc: Document):
        host = (urlsplit(doc.url).hostname or "").lower()
        parts = host.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in self.domains:
                return False, "blocked_domain", ".".join(parts[i:])
        for pattern in self.patterns:
            if pattern.search(doc.url):
                return False, "blocked_url", pattern.pattern
        return True
