"""Mask personal data (lmforge/clean/pii.py): e-mail addresses, public IPs, phone numbers."""

from __future__ import annotations

from lmforge.clean.steps import Step


class PIIStep(Step):
    """Never drops; counts ``masked_<kind>``."""

    name = "pii"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import PIIStep as Settings

        super().__init__(settings or Settings(), words)
        self.kinds = tuple(k for k in ("email", "ip", "phone") if getattr(self.settings, k))

    def filter(self, doc):
        from collections import Counter

        from lmforge.clean.pii import mask_pii

        masks = Counter()
        doc.text = mask_pii(doc.text, masks, self.kinds)
        self.counts.update({f"masked_{k}": v for k, v in masks.items()})
        return True
