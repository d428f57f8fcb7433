import pytest
from django.test import RequestFactory

from shared_lib.http import client_ip

GATEWAY = "10.0.0.2"


@pytest.fixture(autouse=True)
def _trusted(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"]


def ip_of(peer: str, forwarded: str | None = None) -> str:
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **extra))


@pytest.mark.parametrize("peer", ["203.0.113.9", "2001:db8::9"])
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(peer):
    assert ip_of(peer, "198.51.100.1, 10.0.0.7") == peer


def test_a_trusted_peer_without_forwarded_for_is_the_client():
    assert ip_of(GATEWAY) == GATEWAY


def test_a_trusted_peer_vouches_for_the_address_it_appended():
    assert ip_of(GATEWAY, "203.0.113.7") == "203.0.113.7"


def test_the_rightmost_untrusted_hop_wins_over_client_supplied_entries():
    # The client forged the two leftmost entries; 203.0.113.7 is what the first proxy saw.
    assert ip_of(GATEWAY, "1.1.1.1, 198.51.100.1, 203.0.113.7, 10.0.0.5, 10.0.0.4") == (
        "203.0.113.7"
    )


def test_an_all_trusted_chain_gives_the_leftmost_hop():
    assert ip_of(GATEWAY, "10.0.0.9, 10.0.0.5, 127.0.0.1") == "10.0.0.9"


def test_ipv6_peers_and_hops():
    assert ip_of("::1", "2001:db8::1") == "2001:db8::1"
    assert ip_of("fd00::2", "198.51.100.1, 2001:db8::7, fd00::1") == "2001:db8::7"
    assert ip_of(GATEWAY, "2001:db8::7, fd00::1") == "2001:db8::7"


def test_blank_entries_are_skipped():
    assert ip_of(GATEWAY, " , 203.0.113.7 ,, 10.0.0.4 , ") == "203.0.113.7"
    assert ip_of(GATEWAY, " , ,") == GATEWAY
    assert ip_of(GATEWAY, "") == GATEWAY


def test_client_supplied_garbage_left_of_the_client_is_ignored():
    assert ip_of(GATEWAY, "garbage, 999.1.1.1, 203.0.113.7") == "203.0.113.7"


def test_a_garbage_hop_is_never_trusted():
    # Nothing vouches for entries left of an unparseable hop, so they are never chosen.
    assert ip_of(GATEWAY, "203.0.113.7, 10.0.0.300, 10.0.0.5") == "10.0.0.300"


def test_a_garbage_peer_is_not_trusted():
    assert ip_of("unix-socket", "203.0.113.7") == "unix-socket"


def test_trusted_proxies_follow_the_setting(settings):
    settings.TRUSTED_PROXIES = ["192.0.2.0/24"]

    assert ip_of(GATEWAY, "203.0.113.7") == GATEWAY
    assert ip_of("192.0.2.10", "203.0.113.7") == "203.0.113.7"
