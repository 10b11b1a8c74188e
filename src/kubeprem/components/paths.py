"""Where things live on a machine: kubeadm's layout, in one place."""

from __future__ import annotations

ETC_K8S = "/etc/kubernetes"
PKI = "/etc/kubernetes/pki"
ETCD_PKI = "/etc/kubernetes/pki/etcd"

CA_CRT = f"{PKI}/ca.crt"
CA_KEY = f"{PKI}/ca.key"
APISERVER_CRT = f"{PKI}/apiserver.crt"
APISERVER_KEY = f"{PKI}/apiserver.key"
APISERVER_KUBELET_CLIENT_CRT = f"{PKI}/apiserver-kubelet-client.crt"
APISERVER_KUBELET_CLIENT_KEY = f"{PKI}/apiserver-kubelet-client.key"
APISERVER_ETCD_CLIENT_CRT = f"{PKI}/apiserver-etcd-client.crt"
APISERVER_ETCD_CLIENT_KEY = f"{PKI}/apiserver-etcd-client.key"
FRONT_PROXY_CA_CRT = f"{PKI}/front-proxy-ca.crt"
FRONT_PROXY_CLIENT_CRT = f"{PKI}/front-proxy-client.crt"
FRONT_PROXY_CLIENT_KEY = f"{PKI}/front-proxy-client.key"
SA_KEY = f"{PKI}/sa.key"
# serving certificates of the controller-manager (10257) and scheduler (10259)
CONTROLLER_MANAGER_SERVING_CRT = f"{PKI}/kube-controller-manager.crt"
CONTROLLER_MANAGER_SERVING_KEY = f"{PKI}/kube-controller-manager.key"
SCHEDULER_SERVING_CRT = f"{PKI}/kube-scheduler.crt"
SCHEDULER_SERVING_KEY = f"{PKI}/kube-scheduler.key"
SA_PUB = f"{PKI}/sa.pub"

ETCD_CA_CRT = f"{ETCD_PKI}/ca.crt"
ETCD_SERVER_CRT = f"{ETCD_PKI}/server.crt"
ETCD_SERVER_KEY = f"{ETCD_PKI}/server.key"
ETCD_PEER_CRT = f"{ETCD_PKI}/peer.crt"
ETCD_PEER_KEY = f"{ETCD_PKI}/peer.key"
ETCD_HEALTHCHECK_CLIENT_CRT = f"{ETCD_PKI}/healthcheck-client.crt"
ETCD_HEALTHCHECK_CLIENT_KEY = f"{ETCD_PKI}/healthcheck-client.key"
ETCD_DATA = "/var/lib/etcd"

ADMIN_CONF = f"{ETC_K8S}/admin.conf"
CONTROLLER_MANAGER_CONF = f"{ETC_K8S}/controller-manager.conf"
SCHEDULER_CONF = f"{ETC_K8S}/scheduler.conf"
KUBELET_CONF = f"{ETC_K8S}/kubelet.conf"
KUBE_PROXY_CONF = f"{ETC_K8S}/kube-proxy.conf"

ENCRYPTION_CONFIG = f"{ETC_K8S}/encryption-config.yaml"
AUDIT_POLICY = f"{ETC_K8S}/audit-policy.yaml"
AUDIT_LOG = "/var/log/kubernetes/audit.log"
SCHEDULER_CONFIG = f"{ETC_K8S}/kube-scheduler.yaml"

KUBELET_DIR = "/var/lib/kubelet"
KUBELET_CONFIG = f"{KUBELET_DIR}/config.yaml"
KUBELET_SERVING_CRT = f"{KUBELET_DIR}/pki/kubelet.crt"
KUBELET_SERVING_KEY = f"{KUBELET_DIR}/pki/kubelet.key"
KUBELET_CLIENT_CRT = f"{KUBELET_DIR}/pki/kubelet-client.crt"
KUBELET_CLIENT_KEY = f"{KUBELET_DIR}/pki/kubelet-client.key"
KUBE_PROXY_CONFIG = "/var/lib/kube-proxy/config.yaml"

CNI_CONF_DIR = "/etc/cni/net.d"
CNI_BIN_DIR = "/opt/cni/bin"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"

BIN_DIR = "/usr/local/bin"  # where kubeprem installs the binaries it ships
UNIT_DIR = "/etc/systemd/system"
HAPROXY_HEALTHCHECK_PEM = (
    "/etc/haproxy/apiserver-healthcheck.pem"  # client cert + key for /readyz checks
)
