from collections import Counter

import pytest

from lmforge.clean.pii import mask_pii


def test_emails_public_ips_and_phones_are_masked_and_counted():
    counts = Counter()
    text = ("Write to jane.doe+news@mail.example.co.uk or admin@example.org. The server 93.184.216.34 "
            "and 2606:2800:220:1:248:1893:25c8:1946 answered. Call +1 415 555 0100, (555) 123-4567, "
            "555-123-4567 or +82-2-1234-5678.")
    masked = mask_pii(text, counts)
    assert masked == ("Write to <EMAIL> or <EMAIL>. The server <IP_ADDRESS> and <IP_ADDRESS> answered. "
                      "Call <PHONE>, <PHONE>, <PHONE> or <PHONE>.")
    assert counts == Counter(email=2, ip=2, phone=4)


@pytest.mark.parametrize("text", [
    "Python 3.11.7 was released on 2023-12-04 and 3.12.1 on 2023-12-08.",
    "Upgrade to version 2.7.18.1 or Firefox/2.0.0.11 or novas-1.0.0.1; see section 4.8.1.2.",
    "Bind to 127.0.0.1, 192.168.1.20, 10.0.0.1 or ::1 and fe80::1 (private and loopback stay).",
    "x = a[1:2:3]; std::vector<int> v; dead::beef; time 12:30:45; pi = 3.14159; n = 1234567890",
    "@property\ndef name(self): return self._name  # decorators are not e-mails",
    "Released in 1999, revised 2004, the ISBN 978-3-16-148410-0 and the total 1,234,567.",
])
def test_versions_dates_code_and_private_addresses_stay(text):
    counts = Counter()
    assert mask_pii(text, counts) == text
    assert not counts


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_masking_is_idempotent_and_leaves_text_without_digits_or_at_signs(text):
    once = mask_pii(text)
    assert mask_pii(once) == once
    if not any(ch.isdigit() or ch == "@" for ch in text):
        assert once == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.:-+() @abcdefx\n", max_size=120))
def test_masking_is_idempotent_on_digit_and_punctuation_soup(text):
    once = mask_pii(text)
    assert mask_pii(once) == once
