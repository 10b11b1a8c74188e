"""Apply's preflight on the facts, against FakeTransport: a port a component
needs, held by another program, refuses the apply (exit status 2) before
anything changes and names host, port, component and the fix; the same port
held by our own running service, or a converged cluster, passes; what the
facts cannot tell refuses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.components import ports
from kubeprem.components.render import render_machine
from kubeprem.errors import InputError, PreflightError
from kubeprem.pki.bundle import PkiBundle
from kubeprem.plan.facts import HostFacts, Kernel, Listener, ServiceFacts
from kubeprem.site import LoadedSite, example_text, load_site
from kubeprem.transport.fake import FakeService, FakeTransport
from kubeprem.workflows import apply as wf
from kubeprem.workflows.execute import execute
from tests.unit.conftest import cli_on_fakes
from tests.unit.test_apply_failures import assert_untouched, fakes_for, plan


def converge(
    loaded: LoadedSite, bundle: PkiBundle, fakes: Mapping[str, FakeTransport]
) -> wf.ClusterPlan:
    """Execute the first plan, then let every component hold its ports, as
    the running cluster's services do."""
    first = plan(loaded, bundle, dict(fakes))
    asyncio.run(execute(first.hosts, dict(fakes)))
    for m in loaded.site.machines:
        fakes[m.name].listeners += [
            (lst.address, lst.port) for lst in ports.listens(loaded.site, m)
        ]
    return first


# -- refused ---------------------------------------------------------------------


def test_a_port_held_by_another_program_is_refused_before_anything_changes(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["controller-1"].listeners.append(("*", 6443))  # a Go program on :6443
    cplan = plan(loaded, bundle, dict(fakes))
    [problem] = cplan.problems["controller-1"]
    assert "TCP port 6443" in problem and "*:6443" in problem
    assert "kube-apiserver.service is inactive" in problem
    assert "another program holds the port kube-apiserver needs" in problem
    assert "api.apiserver_port in the site file" in problem
    assert all(not p for h, p in cplan.problems.items() if h != "controller-1")
    assert cplan.to_dict()["preflight"] == {"controller-1": [problem]}

    with pytest.raises(PreflightError) as err:
        asyncio.run(wf.apply(loaded, cplan, dict(fakes), [], say=print))
    assert isinstance(err.value, InputError) and err.value.exit_status == 2
    assert "controller-1" in str(err.value) and "nothing changed" in str(err.value)
    assert_untouched(fakes)


def test_apply_on_the_command_line_exits_2_and_names_host_port_and_component(
    cluster: tuple[LoadedSite, PkiBundle],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["worker-2"].listeners.append(("0.0.0.0", 10250))
    cli_on_fakes(monkeypatch, fakes, bundle)

    assert main(["apply", str(loaded.path), "--yes"]) == 2
    out, err = (" ".join(text.split()) for text in capsys.readouterr())
    assert "preflight worker-2: TCP port 10250 is in use (0.0.0.0:10250)" in out  # with the plan
    assert err.startswith("error: preflight failed, nothing changed: worker-2: TCP port 10250")
    assert "the port kubelet needs" in err and "Stop that program" in err
    assert_untouched(fakes)


# -- passed ----------------------------------------------------------------------


def test_the_same_port_held_by_our_own_running_service_passes(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["controller-1"].listeners.append(("*", 6443))
    fakes["controller-1"].services["kube-apiserver.service"] = FakeService(
        "enabled", "active", installed=True
    )
    assert not any(plan(loaded, bundle, dict(fakes)).problems.values())


def test_a_converged_rerun_passes_and_changes_nothing(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    converge(loaded, bundle, fakes)
    assert (6443, "0.0.0.0") in {
        (p, a) for a, p in fakes["controller-0"].listeners
    }  # the ports are held
    again = plan(loaded, bundle, dict(fakes))
    assert not any(again.problems.values())
    assert again.hosts.empty


def test_a_stopped_service_whose_port_another_program_took_is_refused(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    converge(loaded, bundle, fakes)
    fakes["worker-0"].services["kube-proxy.service"].active = "failed"
    # the listeners stand for another program that took kube-proxy's ports
    metrics, health = plan(loaded, bundle, dict(fakes)).problems["worker-0"]
    assert "TCP port 10249" in metrics and "kube-proxy.service is failed" in metrics
    assert "TCP port 10256" in health


def test_a_listener_on_another_address_or_ipv6_only_leaves_the_port_free(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    # kube-proxy's metrics bind the node's address; etcd's peer URL too
    fakes["worker-0"].listeners.append(("127.0.0.1", 10249))
    fakes["controller-0"].listeners.append(("10.240.0.99", 2380))
    fakes["controller-0"].listeners.append(("[::]", 8443))  # ss: IPv6 only; HAProxy: IPv4
    assert not any(plan(loaded, bundle, dict(fakes)).problems.values())
    fakes["worker-0"].listeners.append(("127.0.0.1", 10256))  # health binds every address
    [problem] = plan(loaded, bundle, dict(fakes)).problems["worker-0"]
    assert "TCP port 10256 is in use (127.0.0.1:10256)" in problem


def test_an_ipv6_only_listener_keeps_a_go_component_from_its_dual_stack_port(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    """Go's listen on 0.0.0.0 is one IPv6 socket taking IPv4 too: it cannot
    bind while another program listens on [::] on the same port."""
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["controller-0"].listeners.append(("::", 6443))
    fakes["worker-1"].listeners.append(("fe80::1%eth0", 10250))
    problems = plan(loaded, bundle, dict(fakes)).problems
    [api] = problems["controller-0"]
    assert "TCP port 6443 is in use" in api and "kube-apiserver" in api
    [kubelet] = problems["worker-1"]
    assert "TCP port 10250 is in use" in kubelet and "kubelet" in kubelet


# -- what the facts cannot tell refuses nothing -------------------------------------


def _facts(
    listeners: tuple[Listener, ...] | None, services: Mapping[str, ServiceFacts]
) -> HostFacts:
    return HostFacts("controller-0", systemd=True, listeners=listeners, services=services)


@pytest.mark.parametrize(
    ("listeners", "state", "refused"),
    [
        ((Listener("*", 2379),), "inactive", True),
        ((Listener("*", 2379),), "failed", True),
        (None, "inactive", False),  # no ports section
        ((Listener("*", 2379),), "unknown", False),  # no systemctl
        ((Listener("*", 2379),), "activating", False),  # etcd waiting for quorum
        ((Listener("*", 2379),), "deactivating", False),
        ((Listener("*", 2379),), None, False),  # the unit was not asked about
        ((Listener("fe80000000000000", 2379),), "inactive", False),  # /proc's IPv6 hex
    ],
)
def test_only_what_the_facts_show_for_certain_is_refused(
    cluster: tuple[LoadedSite, PkiBundle],
    listeners: tuple[Listener, ...] | None,
    state: str | None,
    refused: bool,
) -> None:
    loaded, _ = cluster
    services = {} if state is None else {"etcd.service": ServiceFacts("disabled", state)}
    machine = loaded.site.machine("controller-0")
    found = wf.port_conflicts(loaded.site, machine, _facts(listeners, services))
    assert bool(found) is refused
    if refused:
        assert "etcd" in found[0] and "2379" in found[0]


@pytest.mark.parametrize(
    ("ours", "theirs", "clash"),
    [
        (ports.ANY, "*", True),
        (ports.ANY, "0.0.0.0", True),
        (ports.ANY, "10.240.0.10", True),
        (ports.ANY, "127.0.0.53%lo", True),
        (ports.ANY, "::", False),
        (ports.ANY, "fe80::1%eth0", False),
        ("10.240.0.10", "*", True),
        ("10.240.0.10", "0.0.0.0", True),
        ("10.240.0.10", "10.240.0.10", True),
        ("10.240.0.10", "::ffff:10.240.0.10", True),
        ("10.240.0.10", "10.240.0.11", False),
        ("10.240.0.10", "127.0.0.1", False),
        ("127.0.0.1", "not an address", False),
    ],
)
def test_address_clashes(ours: str, theirs: str, clash: bool) -> None:
    assert ports.clashes(ours, theirs) is clash


@pytest.mark.parametrize("theirs", ["::", "[::]", "fe80::1%eth0", "10.240.0.10", "*"])
def test_a_dual_stack_wildcard_clashes_with_every_listener(theirs: str) -> None:
    assert ports.clashes(ports.ANY, theirs, dual_stack=True)
    # a specific address of a dual-stack program is still only that address
    assert not ports.clashes("10.240.0.11", "::", dual_stack=True)


def test_the_go_components_on_every_address_are_dual_stack(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    site = cluster[0].site
    dual = {
        (lst.component, lst.port)
        for m in site.machines
        for lst in ports.listens(site, m)
        if lst.dual_stack
    }
    assert dual == {("kube-apiserver", 6443), ("kubelet", 10250), ("kube-proxy", 10256)}


# -- the table follows the renderers -------------------------------------------------


def test_every_listener_is_one_the_rendered_configuration_opens(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    site = loaded.site
    # the programs' defaults, and the settings that would move them
    defaults = {
        10250: ("\nport:", "\naddress:"),
        ports.KUBELET_HEALTHZ[1]: ("healthzPort", "healthzBindAddress"),
        ports.KUBE_PROXY_HEALTHZ[1]: ("healthzBindAddress",),
        ports.CONTROLLER_MANAGER_SECURE_PORT: ("secure-port",),
        ports.SCHEDULER_SECURE_PORT: ("secure-port",),
    }
    expected = {
        # (1.20's scheduler also served plain HTTP on 10251: gone since 1.23)
        "controller-0": {2379, 2380, 2381, 6443, 10257, 10259, 8443, 8404, 8405},
        "worker-0": {10250, 10248, 10249, 10256},
    }
    for name, wanted_ports in expected.items():
        m = site.machine(name)
        listens = ports.listens(site, m)
        assert {lst.port for lst in listens} == wanted_ports
        rendered = {r.component: r for r in render_machine(site, m, bundle)}
        for lst in listens:
            r = rendered[lst.component]
            assert lst.service in r.services
            text = "\n".join(f.content.decode() for f in r.files)
            if lst.port in defaults:
                for key in defaults[lst.port]:
                    assert key not in text, (lst, key)
            elif lst.address == ports.ANY:
                assert f"bind :{lst.port}" in text or f"--secure-port={lst.port}" in text
            else:
                assert f"{lst.address}:{lst.port}" in text, lst


def test_a_site_without_the_default_ports_is_followed(tmp_path: Path) -> None:
    text = (
        example_text()
        .replace("port: 8443 ", "port: 9443 ")
        .replace("apiserver_port: 6443", "apiserver_port: 7443")
    )
    (tmp_path / "site.yaml").write_text(text)
    site = load_site(tmp_path / "site.yaml").site
    got = {(lst.port, lst.setting) for lst in ports.listens(site, site.machine("controller-0"))}
    assert {(9443, "api.port"), (7443, "api.apiserver_port")} <= got


# -- kernel modules a worker needs -------------------------------------------------


def _kernel(container: str | None = None, **kernel: bool | None) -> HostFacts:
    loaded = {"bridge": True, "br_netfilter": True, "overlay": True, "ip_forward": True}
    return HostFacts("worker-0", container=container, kernel=Kernel(**(loaded | kernel)))


def test_a_module_not_loaded_that_no_one_can_load_is_refused() -> None:
    [problem] = wf.kernel_problems(_kernel(overlay=False, overlay_module=False))
    assert problem.startswith("kernel module overlay is not loaded and the running kernel")
    assert "`modinfo overlay` finds nothing" in problem and "overlayfs snapshotter" in problem

    [problem] = wf.kernel_problems(
        _kernel("systemd-nspawn", bridge=False, br_netfilter=False, br_netfilter_module=True)
    )
    assert "br_netfilter is not loaded, and a container cannot load it" in problem
    assert "on the host, `modprobe br_netfilter`" in problem


def test_a_module_apply_can_load_or_the_facts_cannot_tell_refuses_nothing() -> None:
    assert wf.kernel_problems(_kernel()) == []
    # not loaded, but modinfo finds it: the base phase loads it
    assert wf.kernel_problems(_kernel(overlay=False, overlay_module=True)) == []
    assert wf.kernel_problems(_kernel(bridge=False, br_netfilter=False)) == []  # no modinfo
    # loaded, whatever modinfo says (built in, or no /lib/modules in a container)
    assert wf.kernel_problems(_kernel("docker", overlay_module=False)) == []
    # /sys/module/br_netfilter missing but its sysctls present: loaded
    assert wf.kernel_problems(_kernel(br_netfilter=False, br_netfilter_module=False)) == []
    assert wf.kernel_problems(HostFacts("old-facts")) == []


def test_a_worker_without_a_module_refuses_apply_and_controllers_are_not_asked(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    for name in ("worker-1", "controller-0"):
        fakes[name].kernel.update({"overlay": "no", "overlay-module": "no"})
    cplan = plan(loaded, bundle, dict(fakes))
    assert list(cplan.to_dict()["preflight"]) == ["worker-1"]
    with pytest.raises(PreflightError, match="worker-1: kernel module overlay is not loaded"):
        asyncio.run(wf.apply(loaded, cplan, dict(fakes), [], say=print))
    assert_untouched(fakes)
