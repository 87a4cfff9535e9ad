"""Pulumi Automation API, wrapped once: toolchain, local file backend, secrets, errors, events.

The CLI is the real Pulumi engine built from Go modules by `make setup` (or the user's own
`pulumi` on PATH). Programs run inline through the Automation API, so no separate language host
is needed; dynamic providers run through a `pulumi-resource-pulumi-python` shim that starts this
same Python interpreter.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from ._loop import ensure_event_loop

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC's INFO lines (e.g. on fork) are noise in our output
ensure_event_loop()  # importing Pulumi initialises gRPC's asyncio support, which needs a current loop
from pulumi import automation as auto  # noqa: E402
from semver import VersionInfo  # noqa: E402 (Pulumi's own dependency, for its PulumiCommand)
import yaml  # noqa: E402

from ..errors import EnvironmentProblem, InputError, TradestackError
from ..hostsettings import HostSettings
from ..paths import cache_dir, state_dir

PULUMI_ENV = "TRADESTACK_PULUMI"  # path of a pulumi binary to use
BACKEND_ENV = "TRADESTACK_PULUMI_BACKEND"  # backend URL (default: file:// under the state dir)
SECRET_SENTINEL = "[secret]"


class StackError(TradestackError):
    """A Pulumi operation failed."""


class StackBusy(StackError):
    """Another update of this stack is running."""


class StackNotFound(InputError):
    """The stack does not exist (yet)."""


def sdk_version() -> str:
    return dist_version("pulumi")


def toolchain_cache() -> Path:
    return cache_dir() / "pulumi" / f"v{sdk_version()}"


def find_cli() -> Path:
    """The pulumi binary: $TRADESTACK_PULUMI, then our build cache, then `pulumi` on PATH."""
    explicit = os.environ.get(PULUMI_ENV)
    candidates = [Path(explicit)] if explicit else []
    candidates.append(toolchain_cache() / "bin" / "pulumi")
    on_path = shutil.which("pulumi")
    if on_path:
        candidates.append(Path(on_path))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise EnvironmentProblem("the Pulumi CLI is not installed: run `make setup` (it builds pulumi "
                             f"v{sdk_version()} from Go modules into {toolchain_cache()})")


class _KnownCli(auto.PulumiCommand):
    """The pulumi binary at `path`, its version known: the SDK's own PulumiCommand runs `pulumi version` each time
    it is made (a process of about 0.3 s, in every tradestack command that opens a stack)."""

    def __init__(self, path: Path, version: str) -> None:  # the base class's would run the binary
        self.command = str(path)
        self.version = VersionInfo.parse(version)


def cli_version(cli: Path, memo: Path) -> str:
    """`pulumi version` of the binary `cli` (without its "v"), asked once per binary: remembered in `memo` under
    the binary's path, size and modification time, so a rebuilt or replaced binary is asked again."""
    st = cli.stat()
    key = f"{cli.resolve()} {st.st_size} {st.st_mtime_ns}"
    try:
        known, version = memo.read_text().splitlines()[:2]
        if known == key and version:
            return version
    except (OSError, ValueError):
        pass
    try:
        done = subprocess.run([str(cli), "version"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"{cli} did not tell its version: {exc}") from None
    version = done.stdout.strip().removeprefix("v")
    if done.returncode != 0 or not version:
        raise EnvironmentProblem(f"{cli} did not tell its version: {(done.stderr or done.stdout).strip()[:300]}")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(f"{key}\n{version}\n")
        tmp.replace(memo)
    except OSError:
        pass  # not remembered: asked again next time
    return version


def provider_dirs() -> list[Path]:
    """Resource providers built by make setup (plugins are never downloaded): found on PATH by the engine."""
    found = []
    for name in ("kubernetes",):
        try:
            version = dist_version(f"pulumi-{name}")
        except PackageNotFoundError:
            continue
        d = cache_dir() / f"pulumi-{name}" / f"v{version}" / "bin"
        if (d / f"pulumi-resource-{name}").exists():
            found.append(d)
    return found


def require_provider(name: str) -> None:
    """EnvironmentProblem unless the resource provider `name` (its SDK's version) was built here."""
    if not any(d.parent.parent.name == f"pulumi-{name}" for d in provider_dirs()):
        raise EnvironmentProblem(f"Pulumi's {name} provider is not built: run `make setup-{name}` (it builds "
                                 f"pulumi-resource-{name} from Go modules at its SDK's version, about 10 min the "
                                 "first time)")


def _shim_dir(root: Path) -> Path:
    """Directory holding pulumi-resource-pulumi-python for this interpreter."""
    d = root / "plugin-shims"
    d.mkdir(parents=True, exist_ok=True)
    shim = d / "pulumi-resource-pulumi-python"
    text = f'#!/bin/sh\nexec "{sys.executable}" -u -m pulumi.dynamic "$@"\n'
    if not shim.exists() or shim.read_text() != text:
        shim.write_text(text)
        shim.chmod(0o755)
    return d


def project_file(work: Path, settings: auto.ProjectSettings) -> Path:
    """The project's Pulumi.yaml in `work`, written only when it says something else, and atomically: commands of
    one stack run at once (a drill's power switches for several machines), and the SDK's own save truncates the
    file in place, so another pulumi process read it empty ("expected project to be an object, was '<nil>'")."""
    path = work / "Pulumi.yaml"
    text = yaml.safe_dump(settings.to_dict(), sort_keys=True)
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=work, prefix=".Pulumi.yaml.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def _passphrase_file(root: Path) -> Path:
    path = root / "passphrase"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path


@dataclass(frozen=True)
class StackSpec:
    project: str
    stack: str
    program: Callable[[], None]
    config: dict[str, str] = field(default_factory=dict)
    secret_config: dict[str, str] = field(default_factory=dict)  # encrypted in the stack's configuration


@dataclass(frozen=True)
class OpResult:
    """Outcome of one Pulumi operation."""

    kind: str
    changes: dict[str, int]
    outputs: dict[str, Any]
    stdout: str = ""

    @property
    def changed(self) -> bool:
        return any(n for op, n in self.changes.items() if op != "same")


class PulumiStack:
    """One stack of an inline program on the local backend."""

    def __init__(self, spec: StackSpec):
        self.spec = spec
        self.root = state_dir() / "pulumi"
        cli = find_cli()
        backend = os.environ.get(BACKEND_ENV) or f"file://{self.root / 'backend'}"
        if backend.startswith("file://"):
            Path(backend[len("file://"):]).mkdir(parents=True, exist_ok=True)
        work = self.root / "projects" / spec.project
        work.mkdir(parents=True, exist_ok=True)
        # the engine's and providers' temporary files (the kubernetes provider writes each kubeconfig it is given
        # to one and leaves it): kept out of the machine's /tmp and emptied after each operation
        self._tmp = self.root / "tmp" / spec.project / spec.stack
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {
            "TMPDIR": str(self._tmp),
            "PULUMI_HOME": str(self.root / "home"),
            "PULUMI_BACKEND_URL": backend,
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(_passphrase_file(self.root)),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "PATH": ":".join([str(_shim_dir(self.root)), str(cli.parent), *map(str, provider_dirs()),
                              os.environ.get("PATH", "")]),
        }
        project_file(work, auto.ProjectSettings(name=spec.project, runtime="python", main=str(work),
                                                backend=auto.ProjectBackend(url=backend)))
        self._opts = auto.LocalWorkspaceOptions(  # no project_settings: the SDK would rewrite the file each time
            work_dir=str(work), pulumi_home=env["PULUMI_HOME"], env_vars=env,
            pulumi_command=_KnownCli(cli, cli_version(cli, self.root / "home" / "cli-version")),
            secrets_provider="passphrase")
        os.environ.update({k: v for k, v in env.items() if k not in ("PATH", "TMPDIR")})
        self._stack: auto.Stack | None = None
        # the plain configuration as last read: each read is a pulumi process (a second or more on a busy
        # machine), and a drill's observer asks twice a second; a plain setting this object changes drops it
        self._config: dict[str, str] | None = None

    def _open(self, create: bool) -> auto.Stack:
        if self._stack is None:
            try:
                if create:
                    self._stack = auto.create_or_select_stack(
                        self.spec.stack, project_name=self.spec.project, program=self.spec.program,
                        opts=self._opts)
                else:
                    self._stack = auto.select_stack(self.spec.stack, project_name=self.spec.project,
                                                    program=self.spec.program, opts=self._opts)
            except auto.StackNotFoundError:
                raise StackNotFound(f"stack {self.spec.stack!r} does not exist; run `tradestack stack up`") from None
            except auto.CommandError as exc:
                raise StackError(_clean(exc)) from None
            if create and (self.spec.config or self.spec.secret_config):
                self._config = None
                self._stack.set_all_config({**{k: auto.ConfigValue(v) for k, v in self.spec.config.items()},
                                            **{k: auto.ConfigValue(v, secret=True)
                                               for k, v in self.spec.secret_config.items()}})
        return self._stack

    def exists(self) -> bool:
        try:
            self._open(create=False)
            return True
        except StackNotFound:
            return False

    def preview(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        r = self._call(lambda s: s.preview(on_event=on_event, diff=False), create=True)
        return OpResult("preview", dict(r.change_summary), {}, r.stdout)

    def up(self, on_event: Callable[[Any], None] | None = None, refresh: bool = False,
           targets: list[str] | None = None) -> OpResult:
        """`refresh`: read what exists first, so drift (e.g. a Deployment scaled by hand) is put back. `targets`:
        only these resources' URNs are created or updated (the rest is left as the state has it)."""
        r = self._call(lambda s: s.up(on_event=on_event, color="never", refresh=refresh or None,
                                      target=targets or None), create=True)
        return OpResult("up", dict(r.summary.resource_changes or {}), _plain(r.outputs), r.stdout)

    def refresh(self, on_event: Callable[[Any], None] | None = None, targets: list[str] | None = None) -> OpResult:
        """`targets`: only these resources' URNs are read."""
        r = self._call(lambda s: s.refresh(on_event=on_event, color="never", target=targets or None),
                       create=False)
        return OpResult("refresh", dict(r.summary.resource_changes or {}), {}, r.stdout)

    def resources(self) -> list[dict[str, Any]]:
        """The resources the state holds: each one's `urn`, `type` and `inputs` (as the last update left them)."""
        stack = self._open(create=False)
        try:
            deployment = stack.export_stack().deployment
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None
        return [{"urn": r["urn"], "type": r.get("type", ""), "inputs": r.get("inputs", {})}
                for r in (deployment or {}).get("resources", [])]

    def destroy(self, on_event: Callable[[Any], None] | None = None, remove: bool = True) -> OpResult:
        r = self._call(lambda s: s.destroy(on_event=on_event, color="never"), create=False)
        if remove:
            self._open(create=False).workspace.remove_stack(self.spec.stack)
            self._stack = self._config = None
            self._empty_tmp(remove=True)
        return OpResult("destroy", dict(r.summary.resource_changes or {}), {}, r.stdout)

    def forget(self) -> None:
        """Remove the stack's state without deleting what it manages (for what is already gone with its host)."""
        try:
            self._open(create=False).workspace.remove_stack(self.spec.stack, force=True)
        except StackNotFound:
            pass
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None
        self._stack = self._config = None
        self._empty_tmp(remove=True)

    def outputs(self, secrets_too: bool = False) -> dict[str, Any]:
        """The stack's outputs, secret ones only with `secrets_too`. One `pulumi stack output` (the SDK's
        Stack.outputs runs two, with and without the secrets, to mark which are secret)."""
        outs = self._pulumi_json(["stack", "output", "--json", "--stack", self.spec.stack,
                                  *(["--show-secrets"] if secrets_too else [])])
        # without --show-secrets, Pulumi prints each secret output as this sentinel
        return {k: v for k, v in outs.items() if secrets_too or v != SECRET_SENTINEL}

    def config(self) -> dict[str, str]:
        """The stack's plain (non-secret) configuration, read once and again only after this object changed it
        (an object lives for one command: another command's change is seen by the next command)."""
        if self._config is None:
            # without --show-secrets (the SDK's get_all_config always decrypts every secret: twice the time)
            every = self._pulumi_json(["config", "--json", "--stack", self.spec.stack])
            self._config = {k: v["value"] for k, v in every.items() if not v.get("secret") and "value" in v}
        return dict(self._config)

    def _pulumi_json(self, args: list[str]) -> dict[str, Any]:
        """A pulumi command of this stack's workspace whose stdout is a JSON object."""
        workspace = self._open(create=False).workspace
        env = {**({"PULUMI_HOME": workspace.pulumi_home} if workspace.pulumi_home else {}), **workspace.env_vars}
        try:
            done = workspace.pulumi_command.run(args, workspace.work_dir, env)
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None
        try:
            found = json.loads(done.stdout or "{}")
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise StackError(f"pulumi {' '.join(args[:2])} gave no JSON object: {done.stdout[:300]!r}")
        return found

    def secrets(self, names: list[str], generate: Callable[[], str]) -> dict[str, str]:
        """Stack secrets `tradestack:<name>` (encrypted in the state); any missing one is generated and stored."""
        stack = self._open(create=False)
        try:
            have = stack.get_all_config()
            found: dict[str, str] = {}
            for name in names:
                key = f"tradestack:{name}"
                if key in have:
                    found[name] = have[key].value
                else:
                    found[name] = generate()
                    stack.set_config(key, auto.ConfigValue(found[name], secret=True))
            return found
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None

    def set_config(self, key: str, value: str) -> None:
        """A plain setting of the stack (e.g. `tradestack:allowDrills`)."""
        self._config = None
        try:
            self._open(create=False).set_config(key, auto.ConfigValue(value))
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None

    def set_secret(self, name: str, value: str) -> None:
        try:
            self._open(create=False).set_config(f"tradestack:{name}", auto.ConfigValue(value, secret=True))
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None

    def _call(self, op: Callable[[auto.Stack], Any], create: bool) -> Any:
        stack = self._open(create)
        try:
            return op(stack)
        except auto.ConcurrentUpdateError:
            raise StackBusy(f"another update of stack {self.spec.stack!r} is running; wait for it, or, "
                            "if it crashed, run `pulumi cancel`") from None
        except auto.CommandError as exc:
            raise StackError(_clean(exc)) from None
        finally:
            self._empty_tmp()

    def _empty_tmp(self, remove: bool = False) -> None:
        for left in self._tmp.glob("*"):
            if left.is_dir():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
        if remove:
            shutil.rmtree(self._tmp, ignore_errors=True)


class ManagedStack:
    """What every kind of tradestack stack (lab, hosts) asks of its Pulumi stack, the same way. The Pulumi stack
    is built on first use, so a privilege check can run before the Pulumi CLI is even looked for."""

    _spec: StackSpec
    _stack: PulumiStack | None = None

    @property
    def _pulumi(self) -> PulumiStack:
        if self._stack is None:
            self._stack = PulumiStack(self._spec)
        return self._stack

    def exists(self) -> bool:
        return self._pulumi.exists()

    def outputs(self, secrets_too: bool = False) -> dict[str, Any]:
        return self._pulumi.outputs(secrets_too)

    def config(self) -> dict[str, str]:
        """The stack's plain settings."""
        return dict(self._pulumi.config())

    def set_config(self, key: str, value: str) -> None:
        """A plain setting, e.g. `tradestack:allowDrills`."""
        self._pulumi.set_config(key, value)

    def secrets(self, names: list[str]) -> dict[str, str]:
        """Deploy secrets kept encrypted in the stack's configuration, generated on first use."""
        return self._pulumi.secrets(names, lambda: secrets.token_urlsafe(24))

    def set_secret(self, name: str, value: str) -> None:
        """Set (or rotate) one deploy secret; the next deploy uses it."""
        self._pulumi.set_secret(name, value)

    @property
    def host_settings(self) -> HostSettings:
        """The machine-wide names deploys use on this stack's hosts (its configuration, else the defaults)."""
        return HostSettings.from_config(self._pulumi.config())


def _plain(outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[secret]" if v.secret else v.value) for k, v in outputs.items()}


def _clean(exc: auto.CommandError) -> str:
    """The useful part of a failed pulumi command: its error lines, not the whole transcript."""
    text = str(exc)
    # the error lines, and the causes Pulumi lists under "N error(s) occurred:" as "* ..." lines
    lines = [ln.strip() for ln in text.splitlines()
             if "error:" in ln.lower() or "exception" in ln.lower() or "LabError" in ln
             or ln.strip().startswith("* ")]
    return "\n".join(dict.fromkeys(lines))[:4000] or text[-4000:]


def ensure_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (keys, inventories with secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path
