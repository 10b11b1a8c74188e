"""prometheus.yml: what Prometheus scrapes, and how it reaches each target.

Called by ``render``. Debian's Prometheus (2.42, the image kubeprem builds)
is compiled without Kubernetes service discovery (``kubernetes_sd_configs``
is rejected: its client libraries are not packaged), so:

- every machine-level target comes from the site, as a static target
  labelled with the machine's name (``node``): etcd, API servers,
  controller-manager, scheduler, HAProxy, and on workers the kubelet,
  cAdvisor, kube-proxy and node exporter. The site is the source of truth
  for machines anyway; adding a node means re-rendering (and redeploying)
  the monitoring configuration, as it does for every other component;
- application exporters and the Alertmanager replicas are found by DNS
  (cluster DNS): the A records of a headless Service, every pod address
  behind it, scraped on the port numbers the values give. Not SRV records:
  the legacy release's cluster DNS (dnsmasq fed from hosts files) serves
  none, while A records work with it and with CoreDNS alike.

Static API server targets are also the right choice on their own: the API
server's endpoint reconciler removes a stopped API server from the
``kubernetes`` Service's endpoints within seconds, so an endpoints-discovered
target would vanish instead of reporting ``up == 0``.

How each target is reached through the node firewall (components.firewall),
which sees Prometheus's scrapes arrive from its worker's address: etcd on its
metrics listener (2381, client-certificate TLS; the key-value port 2379
stays closed to workers), the kubelets and cAdvisor through the API server's
node proxy (only controllers may reach 10250), everything else on ports the
firewall opens to the node subnet and the pods: the controller-manager
(10257) and scheduler (10259) over HTTPS on the machine's address, verified
against the cluster CA (their serving certificates name that address), with
the service account's token; kube-proxy (10249) and HAProxy's exporter
(8405) over plain HTTP on the machine's address.

Node exporter on machines that are no node is scraped only when
``Values.exposed`` names ``node-exporter-host`` (Debian's service must run
there).
"""

from __future__ import annotations

from typing import Any

from kubeprem.apps.monitoring import layout as L
from kubeprem.apps.monitoring.values import AppTarget, Values
from kubeprem.components import etcd
from kubeprem.site.model import Machine, Site

Job = dict[str, Any]


def _static(machines: list[Machine], port: int) -> list[dict[str, Any]]:
    """One target group per machine, so every sample carries its machine name."""
    return [{"targets": [f"{m.address}:{port}"], "labels": {"node": m.name}} for m in machines]


def _token_tls() -> dict[str, Any]:
    """HTTPS with the service account's token, verified against the cluster CA
    (which signs the API server's, the kubelets' and the controllers' serving
    certificates; each names its machine's address)."""
    return {
        "scheme": "https",
        "authorization": {"credentials_file": L.SA_TOKEN},
        "tls_config": {"ca_file": L.SA_CA},
    }


def api_address(site: Site) -> str:
    """The API through the ``kubernetes`` Service, by a name its certificate holds."""
    return f"kubernetes.default.svc.{site.cluster.domain}:443"


def _via_apiserver(site: Site, job: str, path: str) -> Job:
    """A kubelet endpoint of every worker through the API server's node proxy
    (``/api/v1/nodes/<node>/proxy<path>``; RBAC ``nodes/proxy`` get).

    Not directly on port 10250: the node firewall lets only the controllers
    (and ``firewall.monitoring_networks``) reach the kubelets, and
    Prometheus's scrapes leave its pod masqueraded to its worker's address.
    The API servers run on the controllers, reach the kubelets with their own
    client certificate, and are reached through the ``kubernetes`` Service.
    Each target stays ``<worker address>:10250`` with its ``node`` label, and
    keeps that as its ``instance``, so series and alerts name the kubelet.
    """
    return {
        "job_name": job,
        **_token_tls(),
        "metrics_path": path,
        "static_configs": _static(site.workers, L.KUBELET_PORT),
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "instance"},
            {
                "source_labels": ["node"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
                "replacement": f"/api/v1/nodes/${{1}}/proxy{path}",
            },
            {"target_label": "__address__", "replacement": api_address(site)},
        ],
    }


def _app_job(app: AppTarget, domain: str) -> Job:
    """Every address of the app's headless Service, on each exporter port.

    An A record carries no pod name, so ``pod`` is the pod's address: the
    same for all ports of one pod, which is what the rules join on
    (``on (namespace, pod)``). ``instance`` stays ``<address>:<port>``.
    """
    name = f"{app.service}.{app.namespace}.svc.{domain}"
    return {
        "job_name": f"app/{app.namespace}/{app.service}",
        "dns_sd_configs": [
            {"names": [name], "type": "A", "port": port} for port in app.ports.values()
        ],
        "relabel_configs": [
            {
                # <address>:<port> -> <address> (an IPv6 address keeps its brackets)
                "source_labels": ["__address__"],
                "regex": r"(.+):[0-9]+",
                "target_label": "pod",
            },
            {"target_label": "namespace", "replacement": app.namespace},
            {"target_label": "app_instance", "replacement": app.instance},
        ],
    }


def jobs(site: Site, values: Values) -> list[Job]:
    workers = site.workers
    out: list[Job] = [
        {
            "job_name": "etcd",
            "scheme": "https",
            # mutual TLS with Prometheus's own etcd client certificate
            "tls_config": {
                "ca_file": L.ETCD_CLIENT_CA,
                "cert_file": L.ETCD_CLIENT_CRT,
                "key_file": L.ETCD_CLIENT_KEY,
            },
            # the metrics listener, not the key-value port: the node
            # firewall lets pods and nodes reach only this one
            "static_configs": _static(site.etcd_members, etcd.METRICS_PORT),
        },
        {
            "job_name": "kube-apiserver",
            **_token_tls(),
            "static_configs": _static(site.controllers, site.api.apiserver_port),
        },
    ]
    out += [
        {
            # serving certificate of the cluster CA with the machine's
            # address as IP SAN; /metrics authorized by delegated RBAC
            "job_name": "kube-controller-manager",
            **_token_tls(),
            "static_configs": _static(site.controllers, L.CONTROLLER_MANAGER_PORT),
        },
        {
            "job_name": "kube-scheduler",
            **_token_tls(),
            "static_configs": _static(site.controllers, L.SCHEDULER_PORT),
        },
    ]
    if workers:
        out += [
            _via_apiserver(site, "kubelet", "/metrics"),
            _via_apiserver(site, "cadvisor", "/metrics/cadvisor"),
        ]
    if workers:
        out.append(
            {
                "job_name": "kube-proxy",
                "static_configs": _static(workers, L.KUBE_PROXY_METRICS_PORT),
            }
        )
    if site.load_balancers:
        out.append(
            {
                "job_name": "haproxy",
                "static_configs": _static(site.load_balancers, L.HAPROXY_METRICS_PORT),
            }
        )
    # the DaemonSet on nodes (host network); Debian's service on the other machines
    hosts = [m for m in site.machines if m.has("worker") or values.exposes("node-exporter-host")]
    if hosts:
        out.append(
            {
                "job_name": "node-exporter",
                "static_configs": _static(hosts, L.NODE_EXPORTER_PORT),
            }
        )
    out += [_app_job(app, site.cluster.domain) for app in values.apps]
    out += [
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": [f"localhost:{L.PROMETHEUS_PORT}"]}],
        },
        {
            # every Alertmanager replica: notification failures are alerts too
            "job_name": "alertmanager",
            "dns_sd_configs": [
                {"names": [_peers(site, values)], "type": "A", "port": L.ALERTMANAGER_PORT}
            ],
        },
    ]
    return out


def _peers(site: Site, values: Values) -> str:
    return f"{L.ALERTMANAGER_PEERS}.{values.namespace}.svc.{site.cluster.domain}"


def config(site: Site, values: Values) -> dict[str, Any]:
    interval = f"{values.scrape_interval_seconds}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{min(10, values.scrape_interval_seconds)}s",
            "evaluation_interval": interval,
            "external_labels": {"cluster": site.cluster.name},
        },
        "rule_files": [L.RULES_GLOB],
        "alerting": {
            "alertmanagers": [
                {
                    # every replica (the headless Service's addresses), not the
                    # load-balanced Service: each alert goes to each Alertmanager
                    "dns_sd_configs": [
                        {"names": [_peers(site, values)], "type": "A", "port": L.ALERTMANAGER_PORT}
                    ],
                }
            ]
        },
        "scrape_configs": jobs(site, values),
    }


def render(site: Site, values: Values) -> str:
    header = "# Rendered by kubeprem (kubeprem monitoring render); changes here are overwritten.\n"
    return header + L.to_yaml(config(site, values))
