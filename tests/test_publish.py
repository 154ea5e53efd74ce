"""Publishing a run: the upload plan, the model card, and the push through the real
``huggingface_hub.HfApi`` to a local HTTP server (``fake_hub.FakeHub``): only the network is
replaced."""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from conftest import TOKEN
from fake_hub import FakeHub
from lerobot_amf.errors import AMFInputError
from lerobot_amf.publish import (NO_TOKEN, TEXT_SUFFIXES, PushError, _pushed_bytes, base_origin, main, push_run,
                                 render_model_card, template_path, upload_plan, without_local_paths)
from lerobot_amf.report import change_kind, write_report

pytestmark = pytest.mark.slow  # the tiny run (tiny_run), a wheel build, an evaluation in Metaworld

REPO = "someone/amf-tiny"


def tree_digest(root: Path) -> dict:
    """path -> sha256 of every file (symlinks: their target) under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def commit_requests(hub: FakeHub) -> list:
    return [r for r in hub.requests if "/commit/" in r.path]


def tables_after(card: str, heading: str) -> list[list[list[str]]]:
    """The markdown tables between ``heading`` and the next heading: rows of cells, header dropped."""
    lines = card.splitlines()
    tables, rows = [], []
    for line in lines[lines.index(heading) + 1:] + [""]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            tables.append(rows[2:])
            rows = []
    return tables + ([rows[2:]] if rows else [])


def rate(entry: dict) -> str:
    lo, hi = entry["ci95"]
    return f"{entry['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] ({entry['successes']}/{entry['episodes']})"


# ---------------------------------------------------------------------------------- the plan
def test_plan_is_the_evaluated_checkpoint_ledger_report_plots_and_card(tiny_run):
    report = json.loads((tiny_run / "amf_report.json").read_text())
    plan = upload_plan(tiny_run, REPO)
    checkpoint = tiny_run / "checkpoints" / "round_01" / "pretrained_model"
    assert report["rounds"][-1]["checkpoint"].endswith("round_01/pretrained_model")
    expected = {"README.md", "amf_report.json", "amf_ledger.jsonl", "success_vs_demos.png",
                "selections_per_round.png"} | {p.name for p in checkpoint.iterdir()}
    assert {f.path_in_repo for f in plan} == expected
    assert {"model.safetensors", "config.json", "train_config.json"} <= expected  # the plain model at the root
    for f in plan:
        if f.path_in_repo == "README.md":
            assert f.data().decode() == render_model_card(tiny_run, REPO)
            continue
        assert f.source.resolve().is_relative_to(tiny_run.resolve())
        if f.content is None:  # pushed byte for byte from the run directory ...
            assert f.data() == f.source.read_bytes() and not f.source.name.endswith(TEXT_SUFFIXES)
        else:  # ... or, for a JSON file naming local paths, the same record with them hidden
            assert "local paths hidden" in f.note
            assert f.data().decode() == _pushed_bytes(f.source, (tiny_run,)).decode()
    hidden = {f.path_in_repo for f in plan if f.content is not None and f.path_in_repo != "README.md"}
    assert {"amf_ledger.jsonl", "amf_report.json", "train_config.json"} <= hidden
    # never the demos, the optimizer state or an older round
    assert not [f for f in plan if f.source and {"demos", "training_state", "round_00"} & set(f.source.parts)]


def test_a_stopped_run_pushes_its_last_evaluated_checkpoint_and_says_it_is_incomplete(tiny_run, tmp_path):
    run = tmp_path / "stopped"
    shutil.copytree(tiny_run, run, symlinks=True)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    cut = max(i for i, line in enumerate(lines) if '"round_end"' in line and '"round": 0' in line)
    ledger.write_text("".join(lines[: cut + 1]))  # stopped after round 0 ended; round_01 exists unevaluated
    write_report(run)
    assert (run / "checkpoints" / "last").resolve().name == "round_01"
    plan = upload_plan(run, REPO)
    sources = {f.source.parent.parent.name for f in plan if f.source and "checkpoints" in f.source.parts}
    assert sources == {"round_00"}
    card = render_model_card(run, REPO)
    assert "This run is INCOMPLETE: it stopped after round 1 of 2 planned" in card
    disclosure = dict(tables_after(card, "## Disclosure")[0])
    assert disclosure["Rounds"] == "1 of 2 planned (INCOMPLETE)"
    assert disclosure["Checkpoint"] == "round 1's (`checkpoints/round_00`)"
    assert "INCOMPLETE" not in render_model_card(tiny_run, REPO)


def add_routed_model(run: Path, base: Path) -> Path:
    """Give the copy of a tiny run a per-task LoRA ``routed_model/`` (over the base checkpoint at
    ``base``, routed by the tasks' instructions, with the base's processors) in its evaluated
    checkpoint, as a ``--amf.isolation=lora`` run saves one; returns that folder."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.envs.metaworld_state import MetaworldCatalog
    from lerobot_amf.isolation import RoutedPolicy, make_partitions

    policy = DiffusionPolicy.from_pretrained(base)
    policy.config.pretrained_path = base
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(base))
    pool = json.loads((run / "amf_report.json").read_text())["pool"]
    instructions = MetaworldCatalog().vocabulary(pool).task_of_instruction
    routed_dir = run / "checkpoints" / "round_01" / "routed_model"
    RoutedPolicy(policy, make_partitions("per_task", pool), "lora", instructions).save(routed_dir, pre, post)
    return routed_dir


def test_pushed_adapters_name_their_base_by_its_hub_repo_id(tiny_run, tmp_path):
    """A base loaded from the Hub cache is a local path to peft; the pushed copies name the repo."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    base = tmp_path / "hub" / "models--lerobot--amf-tiny-base" / "snapshots" / ("0123abcd" * 5)
    shutil.copytree(run / "checkpoints" / "round_01" / "pretrained_model", base)
    routed_dir = add_routed_model(run, base)
    before = tree_digest(run)
    local_configs = sorted(routed_dir.glob("adapters/*/adapter_config.json"))
    assert len(local_configs) == 2
    assert {json.loads(p.read_text())["base_model_name_or_path"] for p in local_configs} == {str(base)}

    plan = {f.path_in_repo: f for f in upload_plan(run, REPO)}
    for local in local_configs:
        pushed = json.loads(plan[f"routed_model/adapters/{local.parent.name}/adapter_config.json"].data())
        assert pushed["base_model_name_or_path"] == "lerobot/amf-tiny-base"
        assert {k: v for k, v in pushed.items() if k != "base_model_name_or_path"} == \
            {k: v for k, v in json.loads(local.read_text()).items() if k != "base_model_name_or_path"}
        weights = plan[f"routed_model/adapters/{local.parent.name}/adapter_model.safetensors"]
        assert weights.data() == (local.parent / "adapter_model.safetensors").read_bytes()
    assert json.loads(plan["routed_model/routing.json"].data())["base"]["pretrained_path"] == "lerobot/amf-tiny-base"
    assert (routed_dir / "adapters" / "README.md").exists() and "routed_model/adapters/README.md" not in plan
    assert "config.json" in plan  # the plain model stays at the root
    assert tree_digest(run) == before  # the rewrite is in the pushed copies only


LOCAL_PATH = re.compile(r"(?<![\w.:/-])/(?:home|root|tmp|Users|var|mnt|data|work)(?=/)")


def test_no_pushed_file_names_a_path_of_this_machine(tiny_run, tmp_path):
    """The ledger, report and ``train_config.json`` name the run directory, the cache and the
    base; a routed model names its local base. None of it leaves the machine."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    add_routed_model(run, run / "checkpoints" / "round_01" / "pretrained_model")
    local_texts = [p.read_text() for p in run.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    assert any(str(run) in text for text in local_texts)  # the run does record its local paths
    here = {str(tmp_path), str(tiny_run), str(Path.home()), str(Path.cwd())}
    for f in upload_plan(run, REPO):
        data = f.data()
        if f.path_in_repo.endswith((".safetensors", ".png")):
            continue
        text = data.decode()
        assert not [h for h in here if h in text], f.path_in_repo
        assert not LOCAL_PATH.search(text), (f.path_in_repo, LOCAL_PATH.search(text).group(0))
    pushed = {f.path_in_repo: f for f in upload_plan(run, REPO)}
    start = json.loads(pushed["amf_ledger.jsonl"].data().decode().splitlines()[0])
    assert start["config"]["output_dir"] == "."  # paths inside the run (where it ran, too): relative to it
    round_end = [json.loads(line) for line in pushed["amf_ledger.jsonl"].data().decode().splitlines()
                 if '"round_end"' in line][-1]
    assert round_end["checkpoint"] == "checkpoints/round_01/pretrained_model"


def test_local_paths_are_hidden_by_where_they_are(tmp_path):
    from huggingface_hub import constants
    from lerobot.utils.constants import HF_LEROBOT_HOME

    run = tmp_path / "runs" / "r1"
    record = {"a": [str(run / "demos"), str(run)], "cache": str(Path(HF_LEROBOT_HOME) / "lerobot_amf_cache" / "x"),
              "hub": f"{constants.HF_HUB_CACHE}/models--a--b", "home": str(Path.home() / "data" / "base"),
              "elsewhere": "/srv/robots/base_ckpt", "text": f"repaired {run / 'demos'}; see {Path.home()}/notes",
              "repo": "lerobot/smolvla_base", "rate": "7/10", "url": "https://huggingface.co/x/y", "n": 3}
    hidden = without_local_paths(record, (run,))
    assert hidden["a"] == ["demos", "."]
    assert hidden["cache"] == "$HF_LEROBOT_HOME/lerobot_amf_cache/x"
    assert hidden["hub"] == "$HF_HUB_CACHE/models--a--b"
    assert hidden["home"].startswith(("~/", "$TMPDIR/")) and hidden["home"].endswith("/data/base")
    assert hidden["elsewhere"] == "<local>/base_ckpt"
    assert str(run) not in hidden["text"] and str(Path.home()) not in hidden["text"]
    assert {k: hidden[k] for k in ("repo", "rate", "url", "n")} == {k: record[k] for k in ("repo", "rate", "url", "n")}


def test_a_relative_two_part_base_is_told_apart_from_a_repo_id_by_existence(tmp_path, monkeypatch):
    """``base/pretrained_model`` seen from the folder a run started in is a local folder (recorded
    absolute); seen from elsewhere, an older record of it is an error, not a repo id."""
    from huggingface_hub import constants

    (tmp_path / "base" / "pretrained_model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert base_origin("base/pretrained_model") == (str(tmp_path / "base" / "pretrained_model"), None)
    monkeypatch.chdir(tmp_path / "base")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(AMFInputError) as err:
        base_origin("base/pretrained_model", recorded_by=tmp_path / "run")
    assert "is no folder here" in str(err.value) and "\n" not in str(err.value)
    assert base_origin("lerobot/smolvla_base") == ("lerobot/smolvla_base", "lerobot/smolvla_base")  # at run start
    (tmp_path / "hf_cache" / "models--lerobot--smolvla_base").mkdir(parents=True)  # an older record of a Hub base
    assert base_origin("lerobot/smolvla_base", recorded_by=tmp_path / "run")[1] == "lerobot/smolvla_base"


def test_card_cells_are_escaped_and_snippets_quoted(tiny_run, tmp_path):
    """Task, suite and partition names come from the run (a routing map, a dataset): none of them
    can end a table cell, open HTML or code, or break out of the card's shell commands."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    hostile = "evil|task`<img src=x onerror=alert(1)>$(touch pwned)"
    for name in ("amf_report.json", "amf_ledger.jsonl"):  # rename one pool task everywhere
        path = run / name
        task = json.loads((run / "amf_report.json").read_text())["pool"][0]
        path.write_text(path.read_text().replace(f'"{task}"', json.dumps(hostile)))
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines()
    start = json.loads(lines[0])
    start["config"]["env"]["task"] = f"{hostile},x'; touch pwned2; '"
    ledger.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    card = render_model_card(run, REPO)
    demo_rows = tables_after(card, "### Demonstrations per task")[0]
    partition_rows = tables_after(card, "### Task → partition")[0]
    assert {len(r) for r in demo_rows} == {4} and {len(r) for r in partition_rows} == {2}  # no cell added
    body = card.split("\n---\n", 1)[1]  # the markdown (the YAML metadata above it is data) ...
    body = re.sub(r"```.*?```", "", body, flags=re.S)  # ... outside code blocks (shown as code, checked below)
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "evil\\|task\\`" in card  # pipe and backtick escaped in the cells
    snippet = next(line for line in card.splitlines() if line.startswith("lerobot-eval "))
    import shlex

    words = shlex.split(snippet.rstrip("\\"))
    assert f"--env.task={hostile},x'; touch pwned2; '" in words  # one word: nothing runs


def test_template_is_the_top_level_model_cards_file_and_ships_in_the_wheel(tmp_path):
    repo_root = Path(__file__).resolve().parents[1]
    template = repo_root / "model_cards" / "amf_model_card.md"
    assert template_path().resolve() == template.resolve()
    src = tmp_path / "src"  # what a wheel is built from, with the symlink as in the repository
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, src / name)
    for name in ("lerobot_amf", "model_cards"):
        shutil.copytree(repo_root / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "from setuptools import build_meta; build_meta.build_wheel('dist')"],
                          cwd=src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (src / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("lerobot_amf/model_cards/amf_model_card.md") == template.read_bytes()


# ---------------------------------------------------------------------------------- the card
def test_card_discloses_what_the_report_says(tiny_run):
    report = json.loads((tiny_run / "amf_report.json").read_text())
    card = render_model_card(tiny_run, REPO)
    pool, pre, fine = report["pool"], report["demos_per_task"]["pretraining"], report["demos_per_task"]["fine_tuning"]

    disclosure = dict(tables_after(card, "## Disclosure")[0])
    assert disclosure["Model"] == report["model"]["isolation"] == "single model (shared weights, all tasks)"
    assert disclosure["Partitions"] == "none: one model for all tasks"
    base_name = Path(report["model"]["pretrained_path"]).name
    assert disclosure["Base checkpoint"].startswith(f"local checkpoint `{base_name}`, not on the Hub")
    assert disclosure["Policy type"] == report["model"]["policy_type"]
    assert disclosure["Selection strategy"] == report["strategy"] == "rebalancing"
    assert disclosure["Rounds"] == f"{len(report['rounds'])} of 2 planned (complete)"
    assert disclosure["Fine-tuning demos"] == f"{sum(fine.values())} of budget {report['budget']}"
    assert disclosure["Pretraining demos"] == str(sum(pre.values()))
    # rebalancing reads no evaluation and runs no rollout: its cost on a robot is its demos
    assert disclosure["Human cost on a robot"] == (f"{sum(fine.values())} demos + 0 evaluation episodes + 0 rollouts "
                                                   f"read by selection = {sum(fine.values())}")
    assert disclosure["Seed"] == str(report["seed"])
    assert disclosure["Demo source"] == report["source"]["name"]
    assert disclosure["Checkpoint"] == "round 2's (`checkpoints/round_01`)"
    import lerobot

    assert f"lerobot {lerobot.__version__}" in disclosure["Software"] and "lerobot_amf " in disclosure["Software"]

    assert dict(tables_after(card, "### Task → partition")[0]) == {t: "- (single model)" for t in pool}
    demos = tables_after(card, "### Demonstrations per task")[0]
    assert demos[:-1] == [[t, str(pre[t]), str(fine[t]), f"{report['target_weights'][t]:.3f}"] for t in pool]
    assert demos[-1] == ["total", str(sum(pre.values())), str(sum(fine.values())), "1.000"]
    selections = tables_after(card, "### Selection per round")[0]
    assert selections == [[str(r["round"] + 1), ", ".join(r["selected"]), r["reason"]] for r in report["rounds"]]
    protocol = dict(tables_after(card, "### Evaluation protocol")[0])
    assert protocol == {k.replace("_", " "): str(v) for k, v in report["eval_protocol"].items()}

    tasks, suites = tables_after(card, "### single model (repo root)")
    final, pretrained = report["rounds"][-1]["eval"], report["pretrained"]
    for row, task in zip(tasks, pool, strict=True):
        kind = change_kind(pretrained["per_task"][task], final["per_task"][task])
        assert row == [task, f"{pre[task]} + {fine[task]}", rate(pretrained["per_task"][task]),
                       rate(final["per_task"][task]), kind + ("" if fine[task] else " (not fine-tuned)")]
    assert suites[-1] == ["all tasks, pooled", str(len(pool)), rate(pretrained["overall"]), rate(final["overall"])]
    assert sum(int(row[1]) for row in suites[:-1]) == len(pool)
    verdict = "improved beyond" if report["final"]["improved_beyond_intervals"] else "NOT improved beyond"
    assert (f"this run's model went from {rate(report['final']['pretrained_on_fine_tuned_tasks'])} (pretrained) to "
            f"{rate(report['final']['fine_tuned_on_fine_tuned_tasks'])}: {verdict} the Wilson 95% intervals") in card
    caveat = re.search(r"\*\*What these numbers do not show:\*\* (.*)", card)[1]
    assert caveat.count(". ") == 0 and caveat.endswith(".")  # one sentence
    assert f"{report['eval_protocol']['episodes_per_task']} simulated episodes per task" in caveat
    assert f"one seed ({report['seed']})" in caveat


def test_card_metadata_is_a_model_index_of_the_reported_results(tiny_run):
    report = json.loads((tiny_run / "amf_report.json").read_text())
    card = ModelCard(render_model_card(tiny_run, REPO))
    data = card.data
    assert data.library_name == "lerobot" and data.pipeline_tag == "robotics" and "lerobot-amf" in data.tags
    assert data.base_model is None  # a local base is not named as a Hub model
    assert data.model_name == "amf-tiny"
    found = {}
    for result in data.eval_results:
        assert result.metric_type == "success_rate" and result.dataset_type == report["eval_protocol"]["env"]
        variant = re.match(r"success rate, ([^:]+): (\d+)/(\d+) episodes", result.metric_name)
        found[(result.dataset_config, variant[1])] = (result.metric_value, int(variant[2]), int(variant[3]))
    final = report["rounds"][-1]["eval"]
    expected = {(task, "single model"): (round(e["success_rate"], 4), e["successes"], e["episodes"])
                for task, e in final["per_task"].items()}
    overall = final["overall"]
    expected[("all tasks", "single model")] = (round(overall["success_rate"], 4), overall["successes"],
                                               overall["episodes"])
    suites = {k: v for k, v in found.items() if k[0].startswith("suite ")}
    assert {k: v for k, v in found.items() if k not in suites} == expected
    assert sum(v[2] for v in suites.values()) == overall["episodes"]


# ---------------------------------------------------------------------------------- the push
def test_push_is_one_commit_of_exactly_the_planned_files(tiny_run, make_hub):
    hub = make_hub()
    result = push_run(tiny_run, REPO, private=True, backoff_s=0)
    plan = upload_plan(tiny_run, REPO)
    assert len(hub.commits) == 1 and hub.commits[0]["branch"] == "main"
    pushed = hub.commits[0]["files"]
    assert sorted(pushed) == result["files"] == [f.path_in_repo for f in plan]
    assert all(pushed[f.path_in_repo] == f.data() for f in plan)
    assert hub.repos == {REPO: {"private": True}}
    assert result["attempts"] == 1 and result["commit_url"].startswith(f"{hub.url}/{REPO}/commit/")
    assert "rebalancing" in hub.commits[0]["summary"] and "INCOMPLETE" not in hub.commits[0]["summary"]
    card = ModelCard(pushed["README.md"].decode())  # the pushed card parses, with its model-index
    assert len(card.data.eval_results) > len(json.loads(pushed["amf_report.json"])["pool"])


def test_the_token_is_used_and_written_nowhere(tiny_run, make_hub):
    hub = make_hub()
    before = tree_digest(tiny_run)
    push_run(tiny_run, REPO, backoff_s=0)
    pushed = hub.push_requests()
    assert pushed and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in pushed)
    secret = TOKEN.encode()
    assert not [path for path, data in hub.commits[0]["files"].items() if secret in data]
    assert TOKEN not in render_model_card(tiny_run, REPO)
    written = [*tiny_run.rglob("*"), *make_hub.hf_home.rglob("*")]
    on_disk = [p for p in written if p.is_file() and secret in p.read_bytes()]
    assert on_disk == [] and tree_digest(tiny_run) == before


def test_push_to_a_branch_creates_it_and_commits_there(tiny_run, make_hub):
    hub = make_hub()
    result = push_run(tiny_run, REPO, revision="amf-run-1", backoff_s=0)
    assert hub.branches == ["amf-run-1"] and hub.commits[0]["branch"] == "amf-run-1"
    assert result["revision"] == "amf-run-1"


@pytest.mark.parametrize("case, needle", [
    ("no_token", NO_TOKEN),
    ("offline", "HF_HUB_OFFLINE"),
    ("bad_repo_id", "'not a repo' is not a Hub repo id"),
    ("not_a_run", "is not a lerobot-amf run directory"),
])
def test_bad_push_input_is_one_line_exit_2_before_any_request(case, needle, tiny_run, make_hub, monkeypatch,
                                                              capsys, tmp_path):
    from huggingface_hub import constants

    hub = make_hub()
    run_dir, repo_id = tiny_run, REPO
    if case == "no_token":
        monkeypatch.delenv("HF_TOKEN")
    elif case == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    elif case == "bad_repo_id":
        repo_id = "not a repo"
    else:
        run_dir = tmp_path
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), f"--repo_id={repo_id}"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert hub.requests == []
    if case == "no_token":
        with pytest.raises(AMFInputError, match="set HF_TOKEN or run `hf auth login`"):
            push_run(tiny_run, REPO)
        assert hub.requests == []


def test_a_failed_commit_is_retried(tiny_run, make_hub):
    hub = make_hub(fail_commits=1)
    result = push_run(tiny_run, REPO, backoff_s=0)
    assert result["attempts"] == 2 and len(commit_requests(hub)) == 2
    assert len(hub.commits) == 1 and sorted(hub.commits[0]["files"]) == result["files"]


def test_a_dropped_connection_is_retried(tiny_run, make_hub, caplog):
    """A network failure (huggingface_hub 1.x: an httpx transport error, here the connection closed
    without an answer) is tried again like a 5xx answer."""
    hub = make_hub(drop_commits=1)
    with caplog.at_level(logging.WARNING):
        result = push_run(tiny_run, REPO, backoff_s=0)
    assert result["attempts"] == 2 and len(commit_requests(hub)) == 2
    assert len(hub.commits) == 1 and sorted(hub.commits[0]["files"]) == result["files"]
    assert "(attempt 1: commit: RemoteProtocolError: " in caplog.text


@pytest.mark.parametrize("failure, named", [("fail_commits", "500"), ("drop_commits", "RemoteProtocolError")])
def test_a_push_that_keeps_failing_is_a_clear_error_and_changes_nothing_local(failure, named, tiny_run, make_hub):
    hub = make_hub(**{failure: -1})
    before = tree_digest(tiny_run)
    with pytest.raises(PushError) as err:
        push_run(tiny_run, REPO, retries=3, backoff_s=0)
    message = str(err.value)
    assert len(commit_requests(hub)) == 3 and hub.commits == []
    assert REPO in message and "3 attempts failed" in message and "attempt 3: commit" in message and named in message
    assert "Nothing local was changed" in message and f"python -m lerobot_amf.publish {tiny_run}" in message
    assert tree_digest(tiny_run) == before


def test_a_refused_push_is_not_retried(tiny_run, make_hub):
    hub = make_hub(create_status=401)
    with pytest.raises(PushError, match="the Hub refused it.*attempt 1: create the repo.*401"):
        push_run(tiny_run, REPO, retries=3, backoff_s=0)
    # huggingface_hub 1.x, told exist_ok, asks once whether the repo exists before raising the 401
    assert [r.path for r in hub.push_requests()] == ["/api/repos/create", f"/api/models/{REPO}"]


# ------------------------------------------------------------------ loading a pushed run back
def test_a_pushed_routed_run_evaluates_from_the_hub_by_repo_id_and_folder(tiny_run, tmp_path, monkeypatch, capsys):
    """The files a push uploads, served as a model repo over HTTP (``benchmarks.local_hub.LocalHub``):
    ``lerobot-amf-eval --policy.path=<repo>/routed_model`` downloads only that folder and routes
    every task to its partition; ``--policy.path=<repo>`` is the plain model at the root."""
    from huggingface_hub import constants

    from benchmarks.local_hub import LocalHub
    from lerobot_amf import eval_cli

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    add_routed_model(run, run / "checkpoints" / "round_01" / "pretrained_model")
    pool = json.loads((run / "amf_report.json").read_text())["pool"]
    repo = tmp_path / "repo"
    for f in upload_plan(run, REPO):  # exactly what a push would upload
        (repo / f.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        (repo / f.path_in_repo).write_bytes(f.data())

    def evaluate(path: str, out: Path, *more: str):
        monkeypatch.setattr(sys, "argv", [
            "lerobot-amf-eval", f"--policy.path={path}", "--policy.device=cpu", "--env.type=mw_state",
            f"--env.task={','.join(pool)}", "--env.episode_length=10", "--amf.eval_episodes=1",
            "--amf.eval_batch_size=1", f"--output_dir={out}", *more])
        eval_cli.main()
        return json.loads((out / eval_cli.REPORT_FILENAME).read_text())

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    base = run / "checkpoints" / "round_01" / "pretrained_model"
    assert json.loads((repo / "routed_model" / "routing.json").read_text())["base"]["pretrained_path"] == \
        "<local>/pretrained_model"  # the pushed record names no path of this machine
    with LocalHub({REPO: repo}) as hub:
        with pytest.raises(SystemExit) as stop:  # the base was local to the pushing machine: say what to pass
            evaluate(f"{REPO}/routed_model", tmp_path / "no_base")
        no_base = (stop.value.code, capsys.readouterr().err.strip().splitlines()[-1])
        routed = evaluate(f"{REPO}/routed_model", tmp_path / "routed", f"--amf.base_path={base}")
        routed_downloads = hub.downloads()
        plain = evaluate(REPO, tmp_path / "plain")
        errors = []
        for path in (f"{REPO}/no_such_folder", "someone/no-such-repo/routed_model"):
            with pytest.raises(SystemExit) as stop:
                evaluate(path, tmp_path / "none")
            errors.append((stop.value.code, capsys.readouterr().err.strip().splitlines()[-1]))
    assert no_base[0] == 2 and "names its base checkpoint as '<local>/pretrained_model'" in no_base[1]
    assert "--amf.base_path=" in no_base[1] and not (tmp_path / "no_base").exists()
    assert routed["model"]["variant"] == "per-partition" and routed["model"]["isolation"] == "lora"
    assert routed["eval"]["routed_to_partition"] == {t: t for t in pool}
    assert routed_downloads and all(f.startswith("routed_model/") for f in routed_downloads)
    assert "routed_model/routing.json" in routed_downloads and "model.safetensors" not in routed_downloads
    assert plain["model"]["variant"] == "single model"
    (code_folder, folder_line), (code_repo, repo_line) = errors
    assert code_folder == code_repo == 2
    assert f"the Hub repo {REPO} has no no_such_folder/routing.json" in folder_line
    assert "no Hub repo someone/no-such-repo" in repo_line
    assert not (tmp_path / "none").exists()
