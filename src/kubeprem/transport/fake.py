"""An in-memory host behind the ``Transport`` seam, for tests of plan and apply.

Used instead of patching internals (httpx's ``MockTransport`` is the model):
a test builds a ``FakeTransport`` with files and services, hands it to the
code under test, then asserts on ``files``, ``services`` and ``calls``.

It understands exactly the commands kubeprem sends:

- the facts script (``sh -c SCRIPT kubeprem-facts MODE PATH... -- UNIT...``)
  and the preview script (``sh -c SCRIPT kubeprem-read LIMIT PATH...``),
  answered from the in-memory state in the scripts' output format;
- ``systemctl daemon-reload | enable UNIT... | start UNIT | restart UNIT | reload UNIT``;
- ``chmod MODE PATH``.

Anything else exits 127, unless a test teaches it with ``handle``. A test
makes a command or a file write fail with ``fail_command`` / ``fail_put``.
Like systemd, ``enable`` needs the unit file on disk, and starting a unit
whose file changed since it was loaded (no daemon-reload) is recorded in
``warnings``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kubeprem.components.base import File
from kubeprem.errors import RemoteError
from kubeprem.transport.base import Result, checked

UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system")
NOT_BOOTED = "System has not been booted with systemd as init system (PID 1). Can't operate."


@dataclass
class FakeFile:
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass
class FakeService:
    """A unit as systemd sees it. ``installed``: known without a file in ``files``."""

    enabled: str = "disabled"
    active: str = "inactive"
    installed: bool = False
    starts: int = 0
    restarts: int = 0
    reloads: int = 0


@dataclass(frozen=True)
class Call:
    kind: Literal["run", "put"]
    argv: tuple[str, ...]
    step: str
    path: str | None = None  # for "put"


@dataclass
class _Failure:
    status: int
    stderr: str
    times: int | None  # None: every time


Handler = Callable[["FakeTransport", tuple[str, ...], bytes | None], tuple[int, str, str]]


def unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


@dataclass
class FakeTransport:
    """A fake host; every field is plain state a test may read or set."""

    name: str = "fake"
    files: dict[str, FakeFile] = field(default_factory=dict)
    services: dict[str, FakeService] = field(default_factory=dict)
    os_id: str = "debian"
    os_version: str = "12"
    arch: str = "x86_64"
    systemd: bool = True
    systemd_version: int = 252
    container: str | None = None
    vm: str | None = None
    swaps: list[tuple[str, int, int]] = field(default_factory=list)  # device, size, used KiB
    listeners: list[tuple[str, int]] = field(default_factory=lambda: [("0.0.0.0", 22)])
    has_ss: bool = True
    kernel: dict[str, str] = field(
        default_factory=lambda: {
            "bridge": "yes",
            "br_netfilter": "yes",
            "overlay": "yes",
            "ip_forward": "1",
        }
    )
    # installed binary -> the first line its --version prints (the facts' versions section)
    versions: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = lambda: 1_700_000_000.0
    calls: list[Call] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loaded_units: dict[str, bytes] = field(default_factory=dict)  # unit -> content at load
    closed: bool = False
    _failures: dict[tuple[str, ...], _Failure] = field(default_factory=dict)
    _put_failures: dict[str, _Failure] = field(default_factory=dict)
    _handlers: list[tuple[tuple[str, ...], Handler]] = field(default_factory=list)

    @classmethod
    def with_files(cls, name: str, files: Mapping[str, bytes], **kwargs: object) -> FakeTransport:
        fake = cls(name, **kwargs)  # type: ignore[arg-type]
        for path, content in files.items():
            fake.files[path] = FakeFile(content)
        return fake

    # --- the Transport protocol ---------------------------------------------

    @property
    def host(self) -> str:
        return self.name

    async def run(
        self,
        argv: Sequence[str],
        *,
        step: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        args = tuple(argv)
        self.calls.append(Call("run", args, step))
        failure = self._take_failure(args)
        if failure is not None:
            status, out, err = failure.status, "", failure.stderr
        else:
            status, out, err = self._interpret(args, stdin)
        result = Result(args, status, out, err)
        return checked(self.host, step, result) if check else result

    async def put(self, file: File, *, step: str) -> None:
        self.calls.append(Call("put", ("sftp-put", file.path), step, file.path))
        failure = self._put_failures.get(file.path)
        if failure is not None:
            self._consume(failure, lambda: self._put_failures.pop(file.path))
            # Atomic like the real one: a failed write leaves the old file as it was.
            raise RemoteError(self.host, step, ["sftp-put", file.path], None, failure.stderr)
        self.files[file.path] = FakeFile(file.content, file.mode)

    async def close(self) -> None:
        self.closed = True

    # --- teaching and asserting ---------------------------------------------

    def fail_command(
        self,
        prefix: Sequence[str],
        *,
        status: int = 1,
        stderr: str = "failed (fake)",
        times: int | None = 1,
    ) -> None:
        """Commands starting with ``prefix`` fail ``times`` times (None: always)."""
        self._failures[tuple(prefix)] = _Failure(status, stderr, times)

    def fail_put(
        self, path: str, *, stderr: str = "Permission denied (fake)", times: int | None = 1
    ) -> None:
        self._put_failures[path] = _Failure(1, stderr, times)

    def handle(self, prefix: Sequence[str], handler: Handler) -> None:
        """Teach a command: ``handler(fake, argv, stdin) -> (status, stdout, stderr)``."""
        self._handlers.append((tuple(prefix), handler))

    def commands(self) -> list[tuple[str, ...]]:
        """Every call in order; scripts shown by their $0, writes as ("sftp-put", path)."""
        return [c.argv[3:4] if c.argv[:2] == ("sh", "-c") else c.argv for c in self.calls]

    def written(self) -> list[str]:
        return [c.path for c in self.calls if c.kind == "put" and c.path]

    def text(self, path: str) -> str:
        return self.files[path].content.decode()

    # --- the interpreter ------------------------------------------------------

    def _take_failure(self, argv: tuple[str, ...]) -> _Failure | None:
        for prefix, failure in list(self._failures.items()):
            if argv[: len(prefix)] == prefix:
                self._consume(failure, lambda p=prefix: self._failures.pop(p))  # type: ignore[misc]
                return failure
        return None

    @staticmethod
    def _consume(failure: _Failure, drop: Callable[[], object]) -> None:
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                drop()

    def _interpret(self, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, str, str]:
        for prefix, handler in self._handlers:
            if argv[: len(prefix)] == prefix:
                return handler(self, argv, stdin)
        if argv[:2] == ("sh", "-c") and len(argv) >= 5 and argv[3] == "kubeprem-facts":
            return 0, self._facts(argv[4], argv[5:]), ""
        if argv[:2] == ("sh", "-c") and len(argv) >= 5 and argv[3] == "kubeprem-read":
            return 0, self._read(int(argv[4]), argv[5:]), ""
        if argv[:1] == ("systemctl",) and len(argv) >= 2:
            return self._systemctl(argv[1], argv[2:])
        if argv[:1] == ("chmod",) and len(argv) == 3:
            f = self.files.get(argv[2])
            if f is None:
                return 1, "", f"chmod: cannot access '{argv[2]}': No such file or directory"
            f.mode = int(argv[1], 8)
            return 0, "", ""
        return 127, "", f"{argv[0] if argv else ''}: command not known to FakeTransport"

    def _unit_file(self, unit: str) -> bytes | None:
        for d in UNIT_DIRS:
            f = self.files.get(f"{d}/{unit}")
            if f is not None:
                return f.content
        return None

    def _unit_exists(self, unit: str) -> bool:
        svc = self.services.get(unit)
        return self._unit_file(unit) is not None or (svc is not None and svc.installed)

    def _service(self, unit: str) -> FakeService:
        return self.services.setdefault(unit, FakeService())

    def _systemctl(self, verb: str, args: tuple[str, ...]) -> tuple[int, str, str]:
        if not self.systemd:
            return 1, "", NOT_BOOTED
        units = [unit_name(a) for a in args if a != "--"]
        if verb == "daemon-reload":
            for unit in list(self.loaded_units):
                content = self._unit_file(unit)
                if content is not None:
                    self.loaded_units[unit] = content
            return 0, "", ""
        for unit in units:
            if not self._unit_exists(unit):
                return 1, "", f"Failed to {verb} unit: Unit {unit} not found."
        if verb == "enable":
            for unit in units:
                self._service(unit).enabled = "enabled"
            return 0, "", ""
        if verb in ("start", "restart"):
            for unit in units:
                content = self._unit_file(unit)
                loaded = self.loaded_units.get(unit)
                if loaded is not None and content is not None and loaded != content:
                    self.warnings.append(f"{unit} changed on disk; run daemon-reload")
                elif content is not None:
                    self.loaded_units[unit] = content
                svc = self._service(unit)
                if verb == "restart" or svc.active != "active":
                    svc.starts += 1
                if verb == "restart":
                    svc.restarts += 1
                svc.active = "active"
            return 0, "", ""
        if verb == "reload":
            for unit in units:
                svc = self._service(unit)
                if svc.active != "active":
                    return 1, "", f"Job for {unit} failed: the unit is not active."
                svc.reloads += 1
            return 0, "", ""
        return 1, "", f"Unknown command verb {verb} (fake)"

    def _facts(self, mode: str, rest: tuple[str, ...]) -> str:
        paths = list(rest[: rest.index("--")]) if "--" in rest else list(rest)
        units = list(rest[rest.index("--") + 1 :]) if "--" in rest else []
        out = ["@@kubeprem facts 1"]
        if mode == "full":
            out += ["@@kubeprem os", f"ID={self.os_id}", f'VERSION_ID="{self.os_version}"']
            out += ["@@kubeprem arch", self.arch]
            out += [
                "@@kubeprem init",
                f"comm {'systemd' if self.systemd else 'sh'}",
                f"booted {'yes' if self.systemd else 'no'}",
                f"version systemd {self.systemd_version} ({self.systemd_version}-fake)",
            ]
            out += [
                "@@kubeprem virt",
                f"container {self.container or 'none'}",
                f"vm {self.vm or 'none'}",
            ]
            out += ["@@kubeprem clock", f"{self.clock():.9f}"]
            out += ["@@kubeprem swaps", "Filename\tType\tSize\tUsed\tPriority"]
            out += [f"{dev}\tpartition\t{size}\t{used}\t-2" for dev, size, used in self.swaps]
            if self.has_ss:
                out.append("@@kubeprem ports ss")
                out += [f"LISTEN 0 4096 {a}:{p} 0.0.0.0:*" for a, p in self.listeners]
            else:
                out.append("@@kubeprem ports proc")
                out += [
                    f"0: {_hex_addr(a)}:{p:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
                    "00000000 0 0 1 1 0000000000000000 100 0 0 10 0"
                    for a, p in self.listeners
                ]
            out.append("@@kubeprem kernel")
            out += [f"{k} {v}" for k, v in self.kernel.items()]
            out.append("@@kubeprem versions")
            out += [f"{k} {v}" for k, v in self.versions.items()]
        for path in paths:
            out.append(f"@@kubeprem file {path}")
            f = self.files.get(path)
            if f is None:
                out.append("missing")
            else:
                out.append(f"sha256 {hashlib.sha256(f.content).hexdigest()}")
                kind = "regular file" if f.content else "regular empty file"
                out.append(f"stat {f.mode:o} {f.owner} {f.group} {kind}")
        for unit in units:
            out.append(f"@@kubeprem service {unit}")
            if not self.systemd:
                out += ["enabled unknown", "active unknown"]
            elif not self._unit_exists(unit_name(unit)):
                out += ["enabled not-found", "active inactive"]
            else:
                svc = self._service(unit_name(unit))
                out += [f"enabled {svc.enabled}", f"active {svc.active}"]
        out.append("@@kubeprem end")
        return "\n".join(out) + "\n"

    def _read(self, limit: int, paths: tuple[str, ...]) -> str:
        out = ["@@kubeprem facts 1"]
        for path in paths:
            f = self.files.get(path)
            if f is None:
                out.append(f"@@kubeprem content-missing {path}")
            elif len(f.content) > limit:
                out.append(f"@@kubeprem content-too-large {path}")
            else:
                out.append(f"@@kubeprem content {path}")
                encoded = base64.b64encode(f.content).decode()
                out += [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
        out.append("@@kubeprem end")
        return "\n".join(out) + "\n"


def _hex_addr(address: str) -> str:
    parts = [int(p) for p in address.split(".")]
    return bytes(parts[::-1]).hex().upper()
