"""The README's console examples run as shown: every `tradestack` command in them that needs no lab is run here
(a fresh state directory, the repository as working directory) and must end as the exit codes table says a
check ends (0, or 1 for a check that does not hold), never in a usage error, a missing program or a traceback.
Every other example must be listed below with where it runs instead, so a new example cannot go untried."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Examples that need what this tier does not have, by their start, and where they are exercised instead.
ELSEWHERE = {
    "sudo ": "root and a lab: the integration tier (tests/integration/test_lab.py, test_deploy.py, test_drills.py, "
             "test_audit.py) runs each of these commands on the run's lab",
    "tradestack refstack run": "runs until Ctrl-C; tests/integration/refstack/ starts the same stack",
    "tradestack refstack load -e http://127.0.0.1:PORT": "needs the gateway `refstack run` started (its PORT)",
    "tradestack refstack reconcile": "needs the ledger and database of the two above (tests/integration/refstack/)",
    "tradestack stack up --stack staging --substrate hosts": "needs an estate of machines over SSH "
                                                             "(tests/integration/test_hosts_substrate.py)",
    "tradestack drill report RUN": "needs a drill run's id (tests/integration/test_drills.py)",
    "tradestack capacity check infra/topologies/lab.yaml --measured measured.yaml":
        "reads what `capacity verify --write-measured` wrote on a lab (tests/integration/test_drills.py)",
    "tradestack capacity peak --prometheus": "needs the estate's Prometheus (tests/integration/"
                                             "test_observed_peak.py runs it against one holding a known history)",
    "tradestack capacity check infra/topologies/lab.yaml --observed peak.yaml":
        "reads what `capacity peak --write` wrote (tests/integration/test_observed_peak.py)",
    "cd reports/audit": "reads an audit's reports (tests/integration/test_audit.py checks the manifest)",
    "ssh-keygen -Y verify": "an auditor's check of an evidence record with OpenSSH alone "
                            "(tests/integration/test_evidence.py runs it on the session lab's records)",
}


def _shown() -> dict[str, list[str]]:
    """Each example command and the output lines the README shows under it (`...` lines elide)."""
    text = (ROOT / "README.md").read_text()
    shown: dict[str, list[str]] = {}
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        command = None
        for line in block.splitlines():
            if line.startswith("$ "):
                command = line[2:].strip()
                shown[command] = []
            elif command is not None and line.strip() and not line.lstrip().startswith("..."):
                shown[command].append(line.strip())
    return shown


def examples() -> list[str]:
    return list(_shown())


def _runnable() -> list[str]:
    return [e for e in examples() if not any(e.startswith(prefix) for prefix in ELSEWHERE)]


def _id(example: str) -> str:
    return shlex.join(shlex.split(example, comments=True))


def test_the_readme_has_examples_and_each_is_run_here_or_named_with_where_it_runs():
    runnable = _runnable()
    assert len(examples()) >= 25 and len(runnable) >= 9, (len(examples()), runnable)
    assert all(e.startswith("tradestack ") for e in runnable), runnable
    unused = [p for p in ELSEWHERE if not any(e.startswith(p) for e in examples())]
    assert unused == [], f"no README example starts with these any more: {unused}"


@pytest.mark.parametrize("example", _runnable(), ids=_id)
def test_a_readme_example_runs_as_shown(example, tmp_path, monkeypatch):
    argv = shlex.split(example, comments=True)
    out = None
    if ">" in argv:  # a redirect, as a shell would do it
        at = argv.index(">")
        argv, out = argv[:at], tmp_path / argv[at + 1]
    tool = Path(sys.executable).parent / "tradestack"
    done = subprocess.run([str(tool), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TRADESTACK_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)})
    if out is not None:
        out.write_text(done.stdout)
    assert done.returncode in (0, 1), f"{example}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr[-2000:]
    if "--json" in argv:
        document = json.loads(out.read_text() if out is not None else done.stdout)
        assert document["ok"] is (done.returncode == 0), document
    elif out is None:
        assert done.stdout.strip(), f"{example} printed nothing"
    for line in _shown()[example]:  # what the README shows it printing
        assert line in done.stdout, f"{example}: the README shows {line!r}; it printed:\n{done.stdout[-2000:]}"


def test_every_relative_link_of_the_readme_and_docs_reaches_a_file():
    """Sections moved to docs/ stay reachable: every relative link (and its #anchor, a heading of the target)
    resolves."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name}: {target} does not exist"
            if anchor and file.suffix == ".md":
                slugs = {re.sub(r"[^\w\- ]", "", h.strip("# ").lower()).replace(" ", "-")
                         for h in file.read_text().splitlines() if h.startswith("#")}
                assert anchor in slugs, f"{page.name}: no heading #{anchor} in {file.name}"
            links += 1
    assert links >= 15, links
