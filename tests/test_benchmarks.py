"""The benchmarks stay runnable: every module imports (its function-level imports included), answers
``--help``, and dry-runs (what it would run and write) without running a model or a simulator.

The benchmarks themselves take minutes to hours; these checks take seconds and catch what used
to go unnoticed until the next run, e.g. a benchmark importing a name the package no longer has.
"""

import ast
import importlib
import pkgutil
import shlex
from pathlib import Path

import pytest

import benchmarks
from benchmarks import common

HELPERS = {"common", "local_hub", "libero_dataset", "tiny_smolvla", "study_stats", "study_runner",
           "study_summary", "oracle"}  # modules of benchmarks/ that are not benchmarks
MODULES = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))
BENCHMARKS = [name for name in MODULES if name not in HELPERS]
SOURCES = sorted(Path(benchmarks.__file__).parent.glob("*.py"))


def dry_run_args(name: str, tmp: Path) -> tuple[list[str], list[str]]:
    """(extra arguments of a benchmark's dry run, what its output must name); every output path
    that a benchmark lets one choose points into ``tmp``. A new benchmark gets none and must dry-run
    with ``--dry-run`` alone."""
    if name == "faults":
        return (["--runs", str(tmp / "runs"), "--results", str(tmp / "faults.json")],
                [str(tmp / "runs"), str(tmp / "faults.json"), shlex.join(common.TINY_ARGS), "--amf.strategy=amf"])
    if name == "forgetting":
        return [], ["shared:", "shared_replay:", "lora_per_task:", "--amf.strategy=rebalancing", "forgetting.json",
                    "forgetting.png"]
    if name == "headroom_pilot":
        return (["--results-dir", str(tmp), "--runs-dir", str(tmp / "runs")],
                ["sinks__seed101__uniform__shared_replay: --config_path=recipes/metaworld_default.json",
                 "unseen__seed102__uniform__shared_replay", "--amf.rounds=6", "--amf.demos_per_round=12",
                 '"peg-insert-side-v3": 0', "--amf.strategy=uniform", "--amf.isolation=shared_replay",
                 str(tmp / "headroom_pilot.json")])
    if name == "headroom_study":  # no pilot in tmp: it says what it waits for and which strategies it plans
        return (["--results-dir", str(tmp)], ["none yet: the headroom pilot is not complete", "lowest_success_small",
                                               "oracle", "amf_no_sim", "amf_eval_progress", "amf_progress"])
    if name == "kernel_rank":
        return (["--pretrain_steps", "7", "--output", str(tmp / "kernel_rank.json")],
                ["pretraining steps: 7", "gradient, 4 layer(s)", str(tmp / "kernel_rank.json")])
    if name == "sample_efficiency":
        return (["--results-dir", str(tmp), "--covered", "reach-v3", "--under-covered", "drawer-close-v3",
                 "--seeds", "1"],
                ["skewed__seed1__amf__shared_replay: --config_path=recipes/metaworld_default.json",
                 "--env.task=reach-v3,drawer-close-v3", str(tmp / "sample_efficiency"),
                 str(tmp / "sample_efficiency.json")])
    if name == "selection_cost":
        return [], ["(a) embedding", "(d) selection", "selection_cost.json", "selection_cost.png"]
    if name == "selection_passes":
        return [], ["embedded", "hard", "draws_2_loglik_8", "rollouts_2", "selection_passes.json", "selection_passes.png"]
    return [], []


def run_main(module, argv) -> int:
    """``module.main(argv)``'s exit code (returning normally is 0)."""
    try:
        module.main(argv)
    except SystemExit as stop:
        return 0 if stop.code is None else stop.code
    return 0


def absolute_imports(path: Path):
    """(module, names) of every absolute import in a file, at any depth (function-level included)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, [alias.name for alias in node.names]


def test_there_are_benchmarks_and_each_has_a_main():
    assert {"faults", "forgetting", "kernel_rank", "sample_efficiency", "selection_cost"} <= set(BENCHMARKS)
    for name in BENCHMARKS:
        assert callable(getattr(importlib.import_module(f"benchmarks.{name}"), "main", None)), name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_import_of_a_benchmark_resolves(path):
    """Also the imports inside functions, which only a real run would reach."""
    importlib.import_module(f"benchmarks.{path.stem}" if path.stem != "__init__" else "benchmarks")
    missing = []
    for module, names in absolute_imports(path):
        try:
            imported = importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{module} ({err})")
            continue
        for name in names:
            if not hasattr(imported, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports what does not exist: {', '.join(missing)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_benchmark_reaches_into_the_tests(path):
    source = path.read_text()
    assert "sys.path" not in source, f"{path.name} edits sys.path"
    assert "conftest" not in source, f"{path.name} names the tests' conftest"
    for module, _ in absolute_imports(path):
        assert module.split(".")[0] not in ("tests", "conftest"), f"{path.name} imports {module}"


def test_the_tiny_configuration_has_one_home():
    from conftest import TINY_ARGS

    assert TINY_ARGS is common.TINY_ARGS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help(name, capsys):
    assert run_main(importlib.import_module(f"benchmarks.{name}"), ["--help"]) == 0
    out = capsys.readouterr().out
    assert f"python -m benchmarks.{name}" in out and "--dry-run" in out


@pytest.mark.parametrize("name", BENCHMARKS)
def test_dry_run_names_what_it_would_run_and_writes_nothing(name, tmp_path, capsys):
    extra, expected = dry_run_args(name, tmp_path)
    assert run_main(importlib.import_module(f"benchmarks.{name}"), ["--dry-run", *extra]) == 0
    out = capsys.readouterr().out
    assert f"[{name}] dry run" in out
    for needle in expected:
        assert needle in out, f"{name} --dry-run does not name {needle!r}:\n{out}"
    assert list(tmp_path.iterdir()) == []


def test_study_dry_run_finds_every_committed_cell_run_with_the_flags_it_would_use(capsys):
    """The committed study's cells were produced with the study's current cells and settings:
    a changed flag would make the study refuse them (and rerun everything)."""
    from benchmarks import sample_efficiency as se

    assert run_main(se, ["--dry-run"]) == 0
    n = len(se.planned_cells(se.SEEDS))
    assert f"cells ({n} of {n} selected done, 0 to run now" in capsys.readouterr().out


def test_re_measuring_one_part_keeps_the_others_rows_with_the_commit_that_measured_them():
    from benchmarks.common import kept_parts

    parts = {"diffusion": ("selection", "diffusion"), "smolvla": ("selection", "smolvla"), "scoring": ("scoring",)}
    old = {"measured_at_commit": "aaaaaaa", "selection": {"diffusion": {"selection_s": 49.0},
                                                          "smolvla": {"selection_s": None, "measured_at_commit": "bbbbbbb"}},
           "scoring": {"seconds_per_pick": 18.2}}
    kept = kept_parts(old, parts, ["scoring"])
    assert "scoring" not in kept  # about to be measured again
    assert kept["selection"]["diffusion"] == {"measured_at_commit": "aaaaaaa", "selection_s": 49.0}
    assert kept["selection"]["smolvla"]["measured_at_commit"] == "bbbbbbb"  # its own commit wins
    assert kept_parts(old, parts, list(parts)) == {}  # everything re-measured: nothing kept


def test_a_selection_killed_by_a_signal_is_a_row_with_no_time_and_a_missed_goal(tmp_path):
    """selection_scale: a part the out-of-memory killer stops leaves a row (its peak RSS, how far its
    progress bars got) whose time goal is missed without a factor, and the plot still draws."""
    from benchmarks import selection_scale

    stderr = ("amf: likelihood of 10 frames under 2 tasks (2 distinct):  50%|#####     | 57/114 [03:20<03:20]\r"
              "amf: likelihood of 10 frames under 2 tasks (2 distinct): 100%|##########| 114/114 [06:46<00:00]\n")
    bars = selection_scale.progress_bars(stderr)
    assert bars == {"amf: likelihood of 10 frames under 2 tasks (2 distinct)":
                    {"chunks_done": 114, "chunks": 114, "elapsed_s": 406}}
    killed = {"policy": "smolvla", "finished": False, "stopped_after_s": None, "selection_s": None,
              "peak_rss_gb": 18.6, "killed_by_signal": 9, "killed_after_s": 1200.0, "progress_when_stopped": bars}
    done = {"policy": "diffusion", "selection_s": 52.0, "peak_rss_gb": 2.67}
    results = {"selection": {"diffusion": done, "smolvla": killed}, "scoring": {"seconds_per_pick": 13.6},
               "dataset": {"tasks": 130, "episodes": 1820}}
    v = selection_scale.verdicts(results)
    assert v["smolvla.selection_s"]["met"] is False and "killed by signal 9" in v["smolvla.selection_s"]["measured"]
    assert v["smolvla.peak_rss_gb"]["met"] is False and v["smolvla.peak_rss_gb"]["misses_by_factor"] == 4.65
    assert v["diffusion.selection_s"]["met"] is True
    fig = selection_scale.plot(results, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").stat().st_size > 0
    assert [ax.get_title() for ax in fig.axes[:2]] == ["one selection, s", "peak RSS, GB"]
    assert "killed at 1200" in [t.get_text() for t in fig.axes[0].texts]


def test_fewer_passes_are_measured_on_a_finished_run_and_only_a_faster_variant_with_the_same_picks_is_chosen(
        tiny_amf_run, lerobot_home, one_torch_thread):
    from benchmarks.selection_cost import finished_run
    from benchmarks.selection_passes import PARTS, decide, measure_setting

    run = finished_run(tiny_amf_run, cache_dir=lerobot_home / "lerobot_amf_cache")
    assert run.pool == ["reach-v3", "drawer-close-v3"] and sum(run.counts.values()) == 4  # 2 rounds x 2 demos
    variants = {"default": {}, "fewer": {"n_draws": 1, "states_per_demo": 4}}
    measured = measure_setting("embedded", [run], repeats=1, variants=variants, round_steps=2)
    (row,) = measured["contexts"]
    default, fewer = row["variants"]["default"], row["variants"]["fewer"]
    assert len(default["picks"]) == len(fewer["picks"]) == 4 and set(default["picks"]) <= set(run.pool)
    assert 0 < fewer["passes"]["embedding"] < default["passes"]["embedding"]  # 1 draw of 4 frames a demo, not 4 of 16
    assert 0 < fewer["passes"]["likelihood"] < default["passes"]["likelihood"]
    parts = measured["parts"]["default"]
    assert set(parts["mean_part_s"]) == set(PARTS) and sum(parts["mean_part_s"].values()) <= default["selection_s"]
    assert parts["floor_s"]["embedding"] > 0 and measured["round_finetune_s"] > 0
    assert parts["ratio_to_round"] == default["selection_s"] / measured["round_finetune_s"]

    def synthetic(picks_b, seconds_b):
        return {"variants": {"default": {"picks": ["a", "b", "a"], "selection_s": 2.0},
                             "b": {"picks": picks_b, "selection_s": seconds_b},
                             "c": {"picks": ["a", "a", "b"], "selection_s": 1.5}}}

    def settings(*rows):
        return {"embedded": {"contexts": list(rows)}}
    assert decide(settings(synthetic(["b", "a", "a"], 1.0)))["chosen"] == "b"  # same demos per task, faster
    assert decide(settings(synthetic(["b", "a", "a"], 1.0), synthetic(["b", "b", "a"], 1.0)))["chosen"] == "c"
    assert decide(settings(synthetic(["b", "a", "a"], 2.5)))["kept_picks_and_faster"] == ["c"]  # b slower
    assert decide(settings(synthetic(["b", "b", "b"], 1.0)))["same_picks"] == {"b": "0/1", "c": "1/1"}
