"""Build modelbay's container images with podman or docker, whichever works here.

    python3 infra/container/images.py build [--json]   # base (if needed), server and lambda images
    python3 infra/container/images.py info              # the engine found, or why there is none
    python3 infra/container/images.py clean             # remove every localhost/modelbay-* image

No registry is needed: the base is a Debian root filesystem made by mmdebstrap from Debian's
packages and imported (podman/docker import). Set BASE=<image> to build on a pulled image
instead (e.g. docker.io/library/python:3.12-slim); CONTAINER_ENGINE=podman|docker picks one.

Every image is tagged with a hash of its inputs and reused while that tag exists, so `make
image` and the tests (tests/test_container.py) build once and then start in seconds. Builds
are serialised by a lock file, so parallel test workers wait for one build instead of racing.
Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTAINERFILE = HERE / "Containerfile"
# podman settings for hosts that are containers themselves (see the file); the tests use it too
CONTAINERS_CONF = HERE / "containers.conf"
LOG_DIR = ROOT / "build" / "container"

# The base root filesystem: Debian's python3 (3.11 on bookworm) with its venv module.
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
MMDEBSTRAP_OPTIONS = (
    "--variant=apt",
    # merged /usr without the usrmerge package (which would pull in perl)
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8")

# What the Containerfile copies (.dockerignore admits the same): the images' input hash covers it.
CONTEXT = (
    "pyproject.toml",
    "README.md",
    "shared",
    "functions",
    "infra/container",
    "infra/layer/Makefile",
    ".dockerignore",
)
TARGETS = ("server", "lambda")
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class NoEngine(RuntimeError):
    """No container engine works on this machine; the message says what is missing."""


@dataclass(frozen=True)
class Engine:
    name: str
    exe: str
    env: Mapping[str, str] = field(default_factory=dict)
    # podman here needs runc (crun cannot set rlimits in a nested container)
    run_flags: tuple[str, ...] = ()
    build_flags: tuple[str, ...] = ()
    # `run` options for a read-only root with a writable /tmp, as Lambda and the Kubernetes
    # manifests have it: podman mounts that tmpfs itself (and with runc, an explicit --tmpfs
    # would come out root-owned 0755); docker needs it asked for.
    read_only: tuple[str, ...] = ("--read-only",)

    def cmd(self, *args: str) -> list[str]:
        # podman's --runtime is a global option; `podman build` then uses it for RUN steps too
        return [self.exe, *self.run_flags, *args]

    def __call__(
        self, *args: str, timeout: float | None = 600, check: bool = True, **kw
    ) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        r = subprocess.run(
            self.cmd(*args), env={**os.environ, **self.env}, text=True, timeout=timeout, check=False, **kw
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd(*args))} failed ({r.returncode}):\n{(r.stderr or '')[-3000:]}")
        return r

    def exists(self, tag: str) -> bool:
        return self("image", "inspect", tag, check=False).returncode == 0

    def size(self, tag: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def _podman() -> Engine | str:
    exe = shutil.which("podman")
    if not exe:
        return "podman is not installed"
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.access("/usr/sbin/runc", os.X_OK) else None)
    engine = Engine(
        "podman",
        exe,
        {"CONTAINERS_CONF": str(CONTAINERS_CONF)},
        run_flags=("--runtime", runc) if runc else (),
        build_flags=("--network", "host", "--format", "docker", "--layers"),
    )
    r = engine("info", check=False, timeout=60)
    return engine if r.returncode == 0 else f"`podman info` failed: {r.stderr.strip()[-300:]}"


def _docker() -> Engine | str:
    exe = shutil.which("docker")
    if not exe:
        return "docker is not installed"
    engine = Engine("docker", exe, {"DOCKER_BUILDKIT": "1"}, read_only=("--read-only", "--tmpfs", "/tmp:mode=1777"))
    r = engine("info", check=False, timeout=60)
    return engine if r.returncode == 0 else "docker's daemon is not reachable (`docker info` failed)"


def detect(environ: Mapping[str, str] | None = None) -> Engine:
    """podman, else docker; CONTAINER_ENGINE=podman|docker insists on one. NoEngine says why neither works."""
    env = os.environ if environ is None else environ
    wanted = env.get("CONTAINER_ENGINE", "").strip()
    probes = {"podman": _podman, "docker": _docker}
    reasons = []
    for name in [wanted] if wanted in probes else list(probes):
        found = probes[name]()
        if isinstance(found, Engine):
            return found
        reasons.append(found)
    raise NoEngine(
        "no container engine works here: "
        + "; ".join(reasons)
        + " (on Debian/Ubuntu: `make container-tools`, i.e. apt-get install podman runc mmdebstrap)"
    )


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _arch() -> str:
    return (
        subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=False).stdout.strip()
        if shutil.which("dpkg")
        else os.uname().machine
    )


def base_tag() -> str:
    digest = _digest(SUITE, MIRRORS, PACKAGES, MMDEBSTRAP_OPTIONS, BASE_CHANGES, _arch())
    return f"localhost/modelbay-base:{SUITE}-{digest}"


def context_digest(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for rel in CONTEXT:
        p = root / rel
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
            h.update(b"x" if os.access(f, os.X_OK) else b"-")
    return h.hexdigest()


def image_tag(target: str, base: str, digest: str) -> str:
    return f"localhost/modelbay-{target}:{_digest(target, base, digest)}"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(Path(tempfile.gettempdir()) / "modelbay-images.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _log(name: str) -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR / f"{name}.log"


def _run_logged(engine: Engine, name: str, *args: str, timeout: float) -> None:
    log = _log(name)
    with log.open("w") as out:
        r = engine(*args, check=False, timeout=timeout, capture_output=False, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{name}: `{' '.join(engine.cmd(*args))}` failed ({r.returncode}); log {log}:\n{tail}")


def build_base(engine: Engine, tag: str) -> None:
    """mmdebstrap a Debian root filesystem into a tarball and import it as `tag`."""
    if not shutil.which("mmdebstrap"):
        raise NoEngine(
            "mmdebstrap is not installed, so no base image can be made "
            "(`make container-tools`, or BASE=<an image with python3> where a registry is reachable)"
        )
    with tempfile.TemporaryDirectory(prefix="modelbay-rootfs-") as d:
        tar = Path(d) / "rootfs.tar"
        with _log("base").open("w") as out:
            r = subprocess.run(
                ["mmdebstrap", *MMDEBSTRAP_OPTIONS, "--include=" + ",".join(PACKAGES), SUITE, str(tar), *MIRRORS],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=False,
            )
        if r.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed; log {_log('base')}:\n{_log('base').read_text()[-3000:]}")
        changes = [a for c in BASE_CHANGES for a in ("--change", c)]
        engine("import", *changes, str(tar), tag, timeout=900)


def build_image(engine: Engine, target: str, base: str, tag: str) -> None:
    args = [*engine.build_flags, "-f", str(CONTAINERFILE), "--target", target, "--build-arg", f"BASE={base}"]
    ca = os.environ.get("SSL_CERT_FILE") or next((c for c in CA_BUNDLES if os.path.exists(c)), None)
    if ca:  # lets pip inside the build trust what this host trusts (e.g. a TLS-inspecting proxy)
        args += ["--secret", f"id=ca,src={ca}"]
    _run_logged(
        engine, target, "build", *args, "-t", tag, "-t", tag.rsplit(":", 1)[0] + ":latest", str(ROOT), timeout=3600
    )


@dataclass
class Images:
    engine: Engine
    base: str
    server: str
    lambda_: str
    built: list[str]
    seconds: float

    def as_json(self) -> dict:
        sizes = {
            t: self.engine.size(tag)
            for t, tag in (("base", self.base), ("server", self.server), ("lambda", self.lambda_))
        }
        return {
            "engine": self.engine.name,
            "base": self.base,
            "server": self.server,
            "lambda": self.lambda_,
            "built": self.built,
            "seconds": round(self.seconds, 1),
            "sizes": sizes,
        }


def ensure(engine: Engine | None = None, base: str | None = None) -> Images:
    """The base, server and lambda images for the current sources: reused if tagged, else built."""
    engine = engine or detect()
    base = base or os.environ.get("BASE") or ""
    t0, built = time.monotonic(), []
    with _locked():
        if not base:
            base = base_tag()
            if not engine.exists(base):
                build_base(engine, base)
                built.append(base)
        digest = context_digest()
        tags = {t: image_tag(t, base, digest) for t in TARGETS}
        for target, tag in tags.items():
            if not engine.exists(tag):
                build_image(engine, target, base, tag)
                built.append(tag)
    return Images(engine, base, tags["server"], tags["lambda"], built, time.monotonic() - t0)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "build"
    try:
        if cmd == "info":
            print(detect().name)
            return 0
        if cmd == "clean":
            engine = detect()
            tags = engine("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
            mine = [t for t in tags if t.startswith("localhost/modelbay-")]
            if mine:
                engine("rmi", "-f", *mine)
            print(f"removed {len(mine)} image tag(s)")
            return 0
        if cmd == "build":
            images = ensure()
            info = images.as_json()
            if "--json" in argv:
                print(json.dumps(info))
            else:
                for name in ("base", "server", "lambda"):
                    print(f"{name:7} {info[name]:60} {info['sizes'][name] / 1e6:7.1f} MB")
                print(f"{images.engine.name}: built {len(images.built)} image(s) in {images.seconds:.0f} s")
            return 0
    except NoEngine as e:
        print(e, file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
