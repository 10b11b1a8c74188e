"""``HttpKubeAPI``: the real Kubernetes API over TLS, standard library only.

Requests are built by one pure function (``build_request``) and sent by
``http.client`` with an ``ssl`` context holding the cluster CA (loaded from
memory) and the client certificate and key. ``ssl`` reads a client key only
from a file, so the key is written into a private 0700 temporary folder,
loaded, and the folder is removed at once; the context keeps the key in
memory for the life of the client. Every failure becomes a ``KubeError``
naming kind, namespace, name, HTTP status and the API's message.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from kubeprem.kube.api import FIELD_MANAGER, KubeError, Obj
from kubeprem.kube.config import KubeConfig, load_kubeconfig
from kubeprem.kube.resources import MOVED, Minor, kind_of, path

READ_TRIES = 4
RETRY_STATUS = frozenset({500, 503, 504})
RETRY_PAUSE = 0.5  # seconds, times the attempt number


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def build_request(
    verb: str,
    kind: str,
    name: str | None = None,
    namespace: str | None = None,
    *,
    body: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    label_selector: str | None = None,
    minor: Minor | None = None,
) -> Request:
    """The HTTP request for one API verb: get, list, apply or delete, to the
    path release ``minor`` serves the kind at (when given). Pure."""
    query: dict[str, str] = {}
    headers = {"Accept": "application/json"}
    data: bytes | None = None
    if verb == "get":
        method, p = "GET", path(kind, name, namespace, minor)
    elif verb == "list":
        method, p = (
            "GET",
            path(kind, None, namespace, minor) if namespace else _cluster_path(kind, minor),
        )
        if label_selector:
            query["labelSelector"] = label_selector
    elif verb == "apply":
        method, p = "PATCH", path(kind, name, namespace, minor)
        query["fieldManager"] = FIELD_MANAGER
        query["force"] = "true"
        # JSON is YAML; the server takes apply patches as application/apply-patch+yaml
        headers["Content-Type"] = "application/apply-patch+yaml"
        data = json.dumps(body, sort_keys=True).encode()
    elif verb == "delete":
        method, p = "DELETE", path(kind, name, namespace, minor)
        headers["Content-Type"] = "application/json"
        data = json.dumps(
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        ).encode()
    else:
        raise ValueError(f"unknown verb {verb}")
    if dry_run:
        query["dryRun"] = "All"
    if query:
        p += "?" + urlencode(query)
    return Request(method, p, data, headers)


def _cluster_path(kind: str, minor: Minor | None = None) -> str:
    k = kind_of(kind, minor)
    return f"{k.base}/{k.plural}"


def _ssl_context(cfg: KubeConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=cfg.ca_pem.decode("ascii", "replace"))
    folder = tempfile.mkdtemp(prefix="kubeprem-kube-")  # mode 0700
    try:
        cert = os.path.join(folder, "client.crt")
        key = os.path.join(folder, "client.key")
        for file, data in ((cert, cfg.cert_pem), (key, cfg.key_pem.reveal())):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise KubeError(
            "connect", "cluster", cfg.source, None, None, f"client certificate: {exc.reason}"
        ) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ctx


class HttpKubeAPI:
    """The API server of one kubeconfig. A new connection per request: waits
    poll seldom, and nothing is left half-open when a call times out."""

    def __init__(self, cfg: KubeConfig, timeout: float = 30.0) -> None:
        url = urlsplit(cfg.server)
        self._host = url.hostname or ""
        self._port = url.port or 443
        self._prefix = url.path.rstrip("/")
        self._ctx = _ssl_context(cfg)
        self._timeout = timeout
        self.server = cfg.server
        self._release: Minor | None = None  # asked once, for kinds that moved

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, timeout: float = 30.0) -> HttpKubeAPI:
        return cls(load_kubeconfig(kubeconfig), timeout)

    # -- the interface -------------------------------------------------------

    def release(self) -> Minor | None:
        """The API server's (major, minor), from ``/version``; None when it
        does not say. Asked once, and only for kinds whose API moved."""
        if self._release is None:
            status, doc = self._send(Request("GET", "/version"), "version", None, None)
            try:
                major = int(str(doc.get("major", "")).rstrip("+"))
                minor = int(str(doc.get("minor", "")).rstrip("+"))
            except ValueError:
                return None
            if status == 200:
                self._release = (major, minor)
        return self._release

    def _minor(self, kind: str) -> Minor | None:
        return self.release() if kind in MOVED else None

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        req = build_request("get", kind, name, namespace, minor=self._minor(kind))
        status, doc = self._send(req, kind, name, namespace)
        if status == 404:
            return None
        return self._ok("get", status, doc, kind, name, namespace)

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        minor = self._minor(kind)
        req = build_request(
            "list", kind, None, namespace, label_selector=label_selector, minor=minor
        )
        status, doc = self._send(req, kind, None, namespace)
        out = self._ok("list", status, doc, kind, None, namespace)
        k = kind_of(kind, minor)
        items = [dict(i) for i in out.get("items") or []]
        for item in items:
            item.setdefault("kind", k.kind)
            item.setdefault("apiVersion", k.api_version)
        return items

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        kind = str(obj.get("kind"))
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name")), meta.get("namespace")
        minor = self._minor(kind)
        if minor is not None:
            # a kind whose API moved: sent as this server serves it (the
            # PodDisruptionBudget fields kubeprem writes mean the same in both)
            obj = {**obj, "apiVersion": kind_of(kind, minor).api_version}
        req = build_request("apply", kind, name, namespace, body=obj, dry_run=dry_run, minor=minor)
        status, doc = self._send(req, kind, name, namespace)
        return self._ok("dry-run apply" if dry_run else "apply", status, doc, kind, name, namespace)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        req = build_request("delete", kind, name, namespace, minor=self._minor(kind))
        status, doc = self._send(req, kind, name, namespace)
        if status == 404:
            return False
        self._ok("delete", status, doc, kind, name, namespace)
        return True

    def close(self) -> None:
        pass

    # -- beyond the interface ------------------------------------------------

    def logs(self, name: str, namespace: str, container: str | None = None) -> str:
        """A pod's log as text (the whole of it): how the failover bench reads
        what its client pod saw."""
        p = path("Pod", name, namespace) + "/log"
        if container:
            p += "?" + urlencode({"container": container})
        req = Request("GET", p, None, {"Accept": "*/*"})
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._ctx, timeout=self._timeout
        )
        try:
            conn.request(req.method, self._prefix + req.path, headers=req.headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            raise KubeError(
                "logs", "Pod", name, namespace, None, f"{self.server}: {exc or type(exc).__name__}"
            ) from exc
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        if 200 <= status < 300:
            return text
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {"message": text[:300]}
        raise KubeError("logs", "Pod", name, namespace, status, str(doc.get("message", "")))

    # -- I/O -----------------------------------------------------------------

    def _send(
        self, req: Request, kind: str, name: str | None, namespace: str | None
    ) -> tuple[int, Obj]:
        """One request; a read is tried again (up to ``READ_TRIES`` times) when the
        server was not reached or answered 500/503/504: an API server under load
        answers "etcdserver: leader changed" during an election, and a read is
        safe to repeat. Writes are sent once."""
        tries = READ_TRIES if req.method == "GET" else 1
        for attempt in range(1, tries + 1):
            try:
                status, doc = self._send_once(req, kind, name, namespace)
            except KubeError:
                if attempt == tries:
                    raise
            else:
                if status not in RETRY_STATUS or attempt == tries:
                    return status, doc
            time.sleep(RETRY_PAUSE * attempt)
        raise AssertionError("unreachable")

    def _send_once(
        self, req: Request, kind: str, name: str | None, namespace: str | None
    ) -> tuple[int, Obj]:
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._ctx, timeout=self._timeout
        )
        try:
            conn.request(req.method, self._prefix + req.path, body=req.body, headers=req.headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            verb = req.method.lower()
            raise KubeError(
                verb, kind, name, namespace, None, f"{self.server}: {exc or type(exc).__name__}"
            ) from exc
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"message": raw[:300].decode("utf-8", "replace")}
        return status, doc if isinstance(doc, dict) else {"message": str(doc)}

    @staticmethod
    def _ok(
        verb: str, status: int, doc: Obj, kind: str, name: str | None, namespace: str | None
    ) -> Obj:
        if 200 <= status < 300:
            return doc
        raise KubeError(
            verb,
            kind,
            name,
            namespace,
            status,
            str(doc.get("message") or "no message"),
            str(doc.get("reason") or ""),
        )


__all__ = ["HttpKubeAPI", "Request", "build_request"]
