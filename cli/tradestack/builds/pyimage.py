"""The trading services' image, built from this machine's files: Debian's Python 3.11 with its standard library
and the shared libraries it needs (their closure, found with ldd), and the reference stack with its runtime
dependencies installed from the deploy's wheelhouse. No base image, no registry.

Installed files keep their modification times, so the interpreter's cached bytecode stays valid; the install
is cached by wheelhouse, so the same source gives the same digest on this machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from ..adapters.commands import run
from .wheelhouse import KEEP, SERVICES, prune
from ..errors import EnvironmentProblem
from .images import BuiltImage, ImageSpec, build

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "config-3.11-x86_64-linux-gnu",
               "dist-packages", "site-packages"}
SITE = "opt/tradestack/site-packages"
# what the reference stack imports at run time (pyproject's "reference trading stack" group, plus its config)
PASSWD = "root:x:0:0:root:/:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _shared_libraries(binaries: list[Path]) -> dict[str, Path]:
    """Every shared library these ELF files load, by the path the loader finds it at."""
    found: dict[str, Path] = {}
    for binary in binaries:
        done = run(["ldd", str(binary)])
        for line in done.stdout.splitlines():
            parts = line.split()
            path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0] if parts and parts[0].startswith("/") else ""
            if path.startswith(("/lib", "/usr/lib")):  # the system's; bundled ones travel with their package
                found[path.lstrip("/")] = Path(path).resolve()
    return found


def _site_packages(wheels: Path, work: Path) -> Path:
    """The reference stack and its runtime dependencies, installed once per wheelhouse."""
    target = work / "site-packages"
    if (work / ".complete").exists():
        with contextlib.suppress(OSError):  # last used now: pruning keeps the ones used most recently
            os.utime(work / ".complete")
        return target
    shutil.rmtree(target, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
           "--find-links", str(wheels), "--target", str(target)]
    done = run([*pip, *SERVICES], timeout=600)
    if done.succeeded:
        own = sorted(wheels.glob("tradestack-*.whl"))
        done = run([*pip, "--no-deps", str(own[-1])], timeout=600) if own else done
    if not done.succeeded:
        raise EnvironmentProblem(f"installing the image's packages from {wheels} failed: {done.why()}")
    (work / ".complete").touch()
    prune(work.parent, keep=KEEP)
    return target


def refstack_image(wheels: Path, work: Path, out: Path, tag: str) -> BuiltImage:
    """The image every trading service runs from: `python3 -m tradestack.refstack <component> --config FILE`."""
    if not PYTHON.exists():
        raise EnvironmentProblem(f"{PYTHON} is missing (Debian's python3.11): run make setup")
    site = _site_packages(wheels, work / wheels.name)
    files: dict[str, Path] = {"usr/bin/python3": PYTHON}
    for path in STDLIB.rglob("*"):
        rel = path.relative_to(STDLIB)
        if path.is_file() and rel.parts[0] not in SKIP_STDLIB:
            files[f"usr/lib/python3.11/{rel}"] = path
    for path in site.rglob("*"):
        if path.is_file():
            files[f"{SITE}/{path.relative_to(site)}"] = path
    elf = [PYTHON, *(p for p in files.values() if p.suffix == ".so" or ".so." in p.name)]
    files.update(_shared_libraries(elf))
    etc = work / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        if not (etc / name).exists() or (etc / name).read_text() != text:
            (etc / name).write_text(text)
        files[f"etc/{name}"] = etc / name
    spec = ImageSpec(f"tradestack.local/refstack:{tag}", files, ("/usr/bin/python3", "-m", "tradestack.refstack"),
                     env=("PATH=/usr/bin:/bin", f"PYTHONPATH=/{SITE}", "PYTHONDONTWRITEBYTECODE=1",
                          "PYTHONUNBUFFERED=1"),
                     keep_mtimes=True)
    return build(spec, out)
