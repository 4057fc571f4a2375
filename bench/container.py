"""The container engine the container tests and ``python -m bench.container`` drive: docker or podman.

``find_engine()`` takes docker when its daemon answers, else podman, with whatever this kind
of machine needs (runc and cgroupfs where crun refuses hybrid cgroups, explicit rlimits
where raising the defaults is not permitted, the host's CA bundle for pip inside a build).
The README never mentions these quirks: they live here, in one ``containers.conf`` and a few
build flags. No image is ever pulled: the base image ``debian:bookworm-slim`` is made from
Debian's packages with mmdebstrap when it is missing (and kept)::

    engine = find_engine()                 # or a str: why no engine can run a container
    engine.ensure_base_image()
    engine.build("hotreload:test", ROOT, {"INSTALL_NODE": "true"})
    engine.run(["run", "--rm", "hotreload:test", "true"])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stack import ROOT, BenchError

BASE_IMAGE = "debian:bookworm-slim"
#: The Debian slim images' trimmings (debuerreotype's): no man pages, docs or translations,
#: and apt keeps no downloaded packages, so an image built FROM ours has the size it has FROM theirs.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/lintian/*",
)
SLIM_APT_OPTIONS = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
    '/var/cache/apt/*.bin || true"; }',
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }',
    'Dir::Cache::pkgcache ""',
    'Dir::Cache::srcpkgcache ""',
)
#: What podman needs on machines whose cgroups crun refuses and whose rlimits cannot be raised.
PODMAN_QUIRKS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Where a build sees the host's CA bundle (not over the image's own: ca-certificates rewrites that).
BUILD_CA_PATH = "/run/host-ca-certificates.crt"


def _quiet(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


@dataclass
class Engine:
    """One container engine: its command (``docker`` or ``podman``) and the environment it runs with."""

    name: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    #: Files this helper wrote (containers.conf, pip.conf); removed by ``close()``.
    scratch: Path | None = None

    @property
    def is_podman(self) -> bool:
        return self.name == "podman"

    def run(
        self, args: list[str], timeout: float = 120, check: bool = True, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        """``<engine> args...``; BenchError with its output when it fails and ``check``."""
        try:
            proc = subprocess.run(
                [self.name, *args],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
                **kwargs,  # type: ignore[call-overload]
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{self.name} {' '.join(args[:3])} did not finish in {timeout:g}s") from exc
        if check and proc.returncode != 0:
            raise BenchError(
                f"{self.name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return proc

    def image_exists(self, image: str) -> bool:
        return self.run(["image", "inspect", image], check=False, timeout=30).returncode == 0

    def ensure_base_image(self) -> float | None:
        """Make ``debian:bookworm-slim`` from Debian's packages when missing; returns the seconds it took."""
        if self.image_exists(BASE_IMAGE):
            return None
        return self.make_base_image(BASE_IMAGE)

    def make_base_image(self, name: str) -> float:
        """Make a Debian bookworm slim image named ``name`` with mmdebstrap; returns the seconds it took."""
        if not shutil.which("mmdebstrap"):
            raise BenchError(
                f"{name} cannot be made: mmdebstrap is not installed (bin/bootstrap installs it)"
            )
        started = time.monotonic()
        command = ["mmdebstrap", "--variant=minbase", "--quiet"]
        command += [f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS]
        command += [f"--aptopt={option}" for option in SLIM_APT_OPTIONS]
        command += ["bookworm", "-"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as debootstrap:
            assert debootstrap.stdout is not None
            imported = subprocess.run(
                [self.name, "import", "--change", "CMD /bin/bash", "-", name],
                stdin=debootstrap.stdout,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=600,
            )
            debootstrap.stdout.close()
            errors = debootstrap.stderr.read().decode(errors="replace") if debootstrap.stderr else ""
            debootstrap.wait(60)
        if debootstrap.returncode != 0 or imported.returncode != 0:
            raise BenchError(f"making {name} failed:\n{errors[-2000:]}{imported.stderr[-2000:]}")
        return time.monotonic() - started

    def build_flags(self) -> list[str]:
        """Flags of ``build`` on this machine: docker's image format (HEALTHCHECK), the host's CA for pip."""
        if not self.is_podman:
            return []
        flags = ["--format", "docker"]
        if HOST_CA_BUNDLE.exists() and self.scratch is not None:
            pip_conf = self.scratch / "pip.conf"
            lines = ["[global]", f"cert = {BUILD_CA_PATH}"]
            if os.environ.get("PIP_INDEX_URL"):
                lines.append(f"index-url = {os.environ['PIP_INDEX_URL']}")
            pip_conf.write_text("\n".join(lines) + "\n")
            flags += [
                "--volume",
                f"{HOST_CA_BUNDLE}:{BUILD_CA_PATH}:ro",
                "--volume",
                f"{pip_conf}:/etc/pip.conf:ro",
            ]
        return flags

    def build(
        self, tag: str, context: Path = ROOT, build_args: dict[str, str] | None = None, no_cache: bool = False
    ) -> tuple[str, float]:
        """Build the Dockerfile of ``context`` as ``tag`` (layer cache reused).

        Returns the built image's ID (what to run: another build may move the tag meanwhile)
        and the seconds the build took.
        """
        descriptor, name = tempfile.mkstemp(prefix="hotreload-iid-")
        os.close(descriptor)
        iidfile = Path(name)
        args = ["build", *self.build_flags(), *(["--no-cache"] if no_cache else [])]
        args += ["--iidfile", str(iidfile), "-t", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        try:
            self.run([*args, str(context)], timeout=900)
            image_id = iidfile.read_text().strip().removeprefix("sha256:")
        finally:
            iidfile.unlink(missing_ok=True)
        return image_id, time.monotonic() - started

    def image_size(self, image: str) -> int:
        """Bytes of ``image``, every layer counted (what ``images`` shows)."""
        return int(self.run(["image", "inspect", "--format", "{{.Size}}", image]).stdout.strip())

    def inspect(self, container: str) -> dict[str, object]:
        return json.loads(self.run(["container", "inspect", container]).stdout)[0]

    def logs(self, container: str) -> str:
        proc = self.run(["logs", container], check=False, timeout=30)
        return proc.stdout + proc.stderr

    def remove(self, container: str) -> None:
        # podman's rm waits the stop timeout first unless told not to; docker's has no such flag.
        quick = ["--time", "0"] if self.is_podman else []
        self.run(["rm", "--force", *quick, container], check=False, timeout=60)

    def compose_command(self) -> list[str]:
        """``docker compose`` or ``podman-compose`` (which reads the same containers.conf)."""
        if self.is_podman:
            tool = shutil.which("podman-compose")
            if not tool:
                raise BenchError("podman-compose is not installed (bin/bootstrap installs it)")
            return [tool]
        return [self.name, "compose"]

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def _can_run(engine: Engine, image: str) -> bool:
    return (
        engine.run(["run", "--rm", "--network", "none", image, "true"], check=False, timeout=120).returncode
        == 0
    )


def find_engine() -> Engine | str:
    """The engine that runs containers here, or one line saying why none can."""
    if shutil.which("docker") and _quiet(["docker", "info"], timeout=20).returncode == 0:
        return Engine("docker")
    if not shutil.which("podman"):
        return "no container engine: docker's daemon does not answer and podman is not installed"
    engine = Engine("podman", scratch=Path(tempfile.mkdtemp(prefix="hotreload-podman-")))
    try:
        engine.ensure_base_image()
    except BenchError as exc:
        engine.close()
        return f"podman cannot make the base image: {str(exc).splitlines()[0]}"
    if _can_run(engine, BASE_IMAGE):
        return engine
    # crun refuses hybrid cgroups and rlimits above the defaults may not be raised: runc, cgroupfs, rlimits.
    assert engine.scratch is not None
    conf = engine.scratch / "containers.conf"
    conf.write_text(PODMAN_QUIRKS_CONF)
    engine.env["CONTAINERS_CONF"] = str(conf)
    if _can_run(engine, BASE_IMAGE):
        return engine
    reason = engine.run(["run", "--rm", BASE_IMAGE, "true"], check=False).stderr.strip().splitlines()
    engine.close()
    return f"podman cannot run a container here: {reason[-1] if reason else 'unknown error'}"
