"""The README is short, its links resolve, and its commands run as printed on a headless machine:
the short ones are run here; the two long ones are checked against what CI runs and against the
CLI's own parser; a command with placeholders uses only flags the CLI has."""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def commands(path: Path = README) -> list[str]:
    """Every command of the file's ```bash blocks: continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out.append(" ".join(line.split()))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_the_readme_lands_in_12_kb_and_points_at_every_doc():
    assert README.stat().st_size <= 12 * 1024
    text = README.read_text()
    for doc in DOCS:
        assert f"docs/{doc.name}" in text, f"README does not link {doc.name}"


def test_nothing_cites_a_method_note_outside_the_repository():
    """The method lives in docs/method.md; the design note it grew from is not shipped."""
    old_note = "AMF" + ".md"
    files = [*ROOT.glob("*.*"), *(p for d in ("lerobot_amf", "tests", "benchmarks", "docs", "recipes", "model_cards")
                                  for p in (ROOT / d).rglob("*"))]
    files = [p for p in files if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".json", ".toml"}]
    assert [str(p.relative_to(ROOT)) for p in files if old_note in p.read_text(errors="ignore")] == []


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{page.name}: no heading #{anchor} in {dest.name}"


def test_command_2_is_what_ci_runs():
    install, test = None, None
    for cmd in commands():
        if "-m venv .venv" in cmd and "pytest" in cmd:
            steps = [s.strip() for s in cmd.split("&&")]
            venv, install, test = steps[0], steps[2], steps[3]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert venv in ci and install in ci and test in ci, (venv, install, test)


def train_flags(cmd: str) -> list[str]:
    words = shlex.split(cmd)
    return words[words.index("lerobot-amf-train") + 1:]


def test_command_1_parses_with_the_clis_own_parser(tmp_path, monkeypatch, capsys):
    """Command 1 as printed, with one bad flag added, stops at that flag: the recipe and every flag
    before it were read and validated (running it whole takes minutes: docs/testing.md)."""
    from lerobot_amf import train

    (cmd,) = [c for c in commands() if "-m venv .venv" in c and "lerobot-amf-train" in c]
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["lerobot-amf-train", *train_flags(cmd), "--amf.strategy=oracle",
                                      f"--output_dir={tmp_path / 'out'}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train.main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "amf.strategy" in err and "oracle" in err, err
    assert not (tmp_path / "out").exists()


def test_commands_with_placeholders_use_only_flags_the_cli_has():
    from lerobot_amf.configs import AMFTrainPipelineConfig

    def known(cls, path: list[str]) -> bool:
        if not path:
            return True
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if path[0] not in fields:
            return False
        kind = fields[path[0]].type
        kind = getattr(sys.modules[cls.__module__], kind, kind) if isinstance(kind, str) else kind
        return known(kind, path[1:]) if dataclasses.is_dataclass(kind) else len(path) == 1

    placeholder = [c for c in commands() if "<" in c and "lerobot-amf-train" in c]
    assert placeholder, "the README's lerobot-train example is gone"
    for cmd in placeholder:
        for flag in train_flags(cmd):
            key = flag.split("=", 1)[0].removeprefix("--").split(".")
            if key[0] in ("amf", "dataset"):
                assert known(AMFTrainPipelineConfig, key), f"unknown flag {flag}"


def short_commands() -> list[str]:
    """The README's commands that run in seconds as printed: not the two long ones, no placeholder."""
    return [c for c in commands() if "-m venv .venv" not in c and "<" not in c]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", short_commands())
def test_short_commands_run_as_printed_on_a_headless_machine(cmd, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL", "WAYLAND_DISPLAY")}
    env.update(HF_HUB_OFFLINE="1", HF_LEROBOT_HOME=str(tmp_path / "home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    proc = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if "--amf.strategy=best" in cmd:  # the README's bad-input example
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "best" in lines[0], proc.stderr[-2000:]
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_hostile_input_tables_quote_the_committed_results():
    """The README's and docs' tables are the benchmark's own rendering of its committed results."""
    import json

    from benchmarks import hostile_inputs

    results = json.loads(hostile_inputs.RESULTS.read_text())
    tables = hostile_inputs.markdown(results)
    by_kind = tables.split("\n\n")[0]
    header, rule, *rows = by_kind.splitlines()
    assert "\n".join([header, rule, rows[-1]]) in README.read_text()  # the README: the columns and the total
    assert tables in (ROOT / "docs" / "untrusted-input.md").read_text()
    summary = results["summary"]
    columns = ("refused_cleanly", "executed", "read_outside", "wrote_outside", "accepted_silently", "traceback", "hung")
    assert f"| total | {summary['tried']} | " + " | ".join(str(summary[c]) for c in columns) + " |" in by_kind
