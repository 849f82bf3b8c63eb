"""Drop documents by URL: a domain blocklist (a domain blocks its subdomains too) and regexes."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from lmforge.clean.steps import Step


class URLStep(Step):
    """``blocked_domain`` when the host is or is under a listed domain, ``blocked_url`` on a regex match."""

    name = "url"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import URLStep as Settings

        super().__init__(settings or Settings(), words)
        self.domains = {d.lower().strip(".") for d in self.settings.block_domains}
        self.patterns = [re.compile(p) for p in self.settings.block_patterns]

    def filter(self, doc):
        if not self.domains and not self.patterns:
            return True
        host = (urlsplit(doc.url).hostname or "").lower()
        parts = host.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in self.domains:
                return False, "blocked_domain", ".".join(parts[i:])
        for pattern in self.patterns:
            if pattern.search(doc.url):
                return False, "blocked_url", pattern.pattern
        return True
