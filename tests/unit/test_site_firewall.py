"""The site file's firewall section: defaults, and every rejected setting with its line."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest

from kubeprem.errors import SiteError
from kubeprem.site import Site, example_text, parse_site
from kubeprem.site.model import ANYWHERE, Firewall


def base() -> str:
    return example_text().split("\nfirewall:\n", 1)[0] + "\n"


def load(firewall_yaml: str) -> Site:
    site, _ = parse_site(base() + firewall_yaml, "site.yaml")
    return site


def problem(firewall_yaml: str) -> str:
    with pytest.raises(SiteError) as err:
        load(firewall_yaml)
    return str(err.value)


def line_of(firewall_yaml: str, needle: str) -> int:
    """1-based line of ``needle`` in the whole site text."""
    text = base() + firewall_yaml
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_example_declares_the_defaults(example_site: Site) -> None:
    assert example_site.firewall == Firewall()
    assert example_site.firewall.enabled
    assert tuple(example_site.firewall.admin_networks) == ANYWHERE


def test_no_section_means_defaults() -> None:
    site = load("")
    assert site.firewall == Firewall()


def test_full_section_parses() -> None:
    site = load(
        "firewall:\n"
        "  admin_networks: [192.168.10.0/24, '2001:db8::/32']\n"
        "  nodeport_networks: [198.51.100.0/24]\n"
        "  monitoring_networks: [10.240.0.50]\n"
        "  openings:\n"
        "    - reason: node-exporter for the NOC\n"
        "      ports: [9100, '9200-9210', '9300']\n"
        "      sources: [192.0.2.0/24]\n"
        "      roles: [worker]\n"
    )
    fw = site.firewall
    assert fw.admin_networks == [IPv4Network("192.168.10.0/24"), IPv6Network("2001:db8::/32")]
    assert fw.monitoring_networks == [IPv4Network("10.240.0.50/32")]
    opening = fw.openings[0]
    assert opening.port_ranges() == [(9100, 9100), (9200, 9210), (9300, 9300)]
    assert opening.applies_to(site.machine("worker-0"))
    assert not opening.applies_to(site.machine("controller-0"))


def test_opening_without_reason() -> None:
    text = "firewall:\n  openings:\n    - ports: [9100]\n      sources: [192.0.2.0/24]\n"
    msg = problem(text)
    assert f"site.yaml:{line_of(text, 'openings:')}:" in msg
    assert "missing required key 'reason' in firewall.openings[0]" in msg


def test_opening_with_blank_reason() -> None:
    text = "firewall:\n  openings:\n    - reason: '  '\n      ports: [9100]\n      sources: [192.0.2.0/24]\n"
    msg = problem(text)
    assert f"site.yaml:{line_of(text, 'reason')}:" in msg
    assert "the reason is blank" in msg


def test_empty_admin_networks_would_lock_everyone_out() -> None:
    text = "firewall:\n  admin_networks: []\n"
    msg = problem(text)
    assert f"site.yaml:{line_of(text, 'admin_networks')}:" in msg
    assert "SSH would be closed to everyone, kubeprem included" in msg


@pytest.mark.parametrize(
    "networks",
    [
        "['2001:db8::/32']",  # kubeprem connects over IPv4
        "[127.0.0.0/8]",
        "[10.200.0.0/16]",  # the pod CIDR
        "[10.32.0.0/24, 224.0.0.0/4]",
    ],
)
def test_admin_networks_no_operator_can_be_in(networks: str) -> None:
    msg = problem(f"firewall:\n  admin_networks: {networks}\n")
    assert "none of firewall.admin_networks can hold the machine kubeprem runs on" in msg


def test_admin_networks_narrowed_to_a_real_network_is_fine() -> None:
    site = load("firewall:\n  admin_networks: [192.168.10.0/24, '2001:db8::/32']\n")
    assert len(site.firewall.admin_networks) == 2


@pytest.mark.parametrize(
    ("ports", "protocol", "expected"),
    [
        ("[22]", "tcp", "SSH is opened only by firewall.admin_networks"),
        ("['2000-2400']", "tcp", "etcd is reached only by the etcd and control-plane machines"),
        ("[6443]", "tcp", "the API port is opened by firewall.admin_networks"),
        ("[8443]", "tcp", "the VIP's port is opened by firewall.admin_networks"),
        ("[10250]", "tcp", "the kubelet is opened by firewall.monitoring_networks"),
        ("['16384-32768']", "udp", "NodePorts are opened by firewall.nodeport_networks"),
    ],
)
def test_opening_on_a_guarded_port(ports: str, protocol: str, expected: str) -> None:
    text = (
        "firewall:\n  openings:\n    - reason: because\n"
        f"      protocol: {protocol}\n      ports: {ports}\n      sources: [192.0.2.0/24]\n"
    )
    msg = problem(text)
    assert f"site.yaml:{line_of(text, 'ports:')}:" in msg
    assert "is guarded by the firewall" in msg and expected in msg


def test_guarded_port_only_matters_on_machines_that_guard_it() -> None:
    # etcd runs on the controllers only: an opening of 2379 on workers is harmless
    site = load(
        "firewall:\n  openings:\n    - reason: a tool of our own on the workers\n"
        "      ports: [2379]\n      sources: [192.0.2.0/24]\n      roles: [worker]\n"
    )
    assert site.firewall.openings[0].roles == ["worker"]
    # udp 10250 is not the kubelet's port
    load(
        "firewall:\n  openings:\n    - reason: syslog relay\n      protocol: udp\n"
        "      ports: [10250]\n      sources: [192.0.2.0/24]\n"
    )


def test_opening_names_an_unknown_machine() -> None:
    text = (
        "firewall:\n  openings:\n    - reason: x\n      ports: [9100]\n"
        "      sources: [192.0.2.0/24]\n      machines: [worker-9]\n"
    )
    msg = problem(text)
    assert f"site.yaml:{line_of(text, 'worker-9')}:" in msg
    assert "no machine is named 'worker-9'" in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.1.0.1/16", "has host bits set; the network is 10.1.0.0/16"),
        ("300.0.0.0/8", "is not a network like 192.0.2.0/24"),
    ],
)
def test_bad_networks(value: str, expected: str) -> None:
    msg = problem(f"firewall:\n  nodeport_networks: [{value}]\n")
    assert "firewall.nodeport_networks[0]" in msg and expected in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("70000", "port 70000 is outside 1-65535"),
        ("'10-5'", "port range 10-5 must go up"),
        ("ab", 'a port is a number (9100) or a range in quotes ("8000-8080")'),
        ("true", "a port is a number"),
    ],
)
def test_bad_ports(value: str, expected: str) -> None:
    msg = problem(
        "firewall:\n  openings:\n    - reason: x\n"
        f"      ports: [{value}]\n      sources: [192.0.2.0/24]\n"
    )
    assert "firewall.openings[0].ports[0]" in msg and expected in msg


def test_network_listed_twice() -> None:
    msg = problem("firewall:\n  monitoring_networks: [10.9.0.0/24, 10.9.0.0/24]\n")
    assert "10.9.0.0/24 is listed twice in firewall.monitoring_networks" in msg


def test_unknown_key_lists_the_allowed_ones() -> None:
    msg = problem("firewall:\n  admin_network: [10.0.0.0/8]\n")
    assert "unknown key 'admin_network'" in msg and "admin_networks" in msg


def test_enabled_is_a_strict_boolean() -> None:
    assert not load("firewall:\n  enabled: false\n").firewall.enabled
    assert "firewall.enabled" in problem("firewall:\n  enabled: no\n")
