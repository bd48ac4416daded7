"""The mailer's address check: what the mail task refuses at once, before any SMTP."""

from __future__ import annotations

import pytest

from envoi_mails.mailer import InvalidAddress, validate_address


@pytest.mark.parametrize("address", ["destinataire@example.com", " a.b+c@mail.example.org "])
def test_valid_addresses_pass(address: str) -> None:
    assert validate_address(address) == address.strip()


@pytest.mark.parametrize(
    "address", ["pas-une-adresse", "a@b", "a b@example.com", "", "@x.org", "<a@example.com>", 42]
)
def test_invalid_addresses_are_refused(address: object) -> None:
    with pytest.raises(InvalidAddress):
        validate_address(address)
