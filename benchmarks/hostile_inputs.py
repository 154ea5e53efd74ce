"""Every bad or hostile input we know of, tried the way a user (or an attacker) would: through the
real command lines, each in its own process, and what came of it.

The attacks are those of someone who publishes a checkpoint, a routed model, a dataset, a recipe
or a run directory. For each case the benchmark prepares what the case needs in its own scratch
folder (a copy of a finished tiny run or of its checkpoint with a hostile file in it, a routed
model whose files link out of its folder, a LIBERO-shaped dataset with hostile metadata, a
local Hub serving a hostile repo, a folder of Python an attacker ships ...), runs the command
(``lerobot-amf-train``, ``lerobot-amf-eval``, ``lerobot-amf-plan``, ``python -m
lerobot_amf.publish``) in a process group of its own, and records:

* ``exit_code`` and ``line``: the one error line the command printed (the last line of stderr
  holding ``error:``, else its last line);
* ``refused_cleanly``: exit code 2, exactly one ``error:`` line on stderr, no ``Traceback``, and
  nothing watched changed;
* ``executed``: the attacker's code ran (it creates a marker file on import) or was imported:
  a module of it left in transformers' dynamic-module cache (``HF_MODULES_CACHE``, a folder of
  the case's own) counts too;
* ``read_outside``: the process (or any process it started) opened for reading, or listed, a
  path under the case's decoys: files and folders outside the input's folder that the hostile
  input names or links to; an open through a symlink the case planted in the input counts too.
  Traced with ``strace -f --seccomp-bpf -qq -y -e trace=open,openat,openat2`` (``-y``: the real path each
  open reached, so an open through a link shows where it led); without strace, with a Python
  audit hook (``sitecustomize.py`` on ``PYTHONPATH``), blind to opens made in C or Rust
  (safetensors, pyarrow, tokenizers, video decoders) and in processes that are not Python;
* ``wrote_outside``: anything watched changed: a run or output directory that must not appear,
  the hostile input itself, the user's ``--policy.path`` folder, the decoys, a folder standing in
  for the user's home;
* ``accepted_silently``: exit code 0, though every case here must be refused (a case can judge
  this itself: a forged evaluation counts as accepted when its number reaches the run's record);
* ``traceback``: ``Traceback`` on stderr, or an exit code other than 0 and 2;
* ``hung``: the command ran past its time (180 s; 600 s for a case that would train if it were
  accepted) and its process group was killed.

Every command runs with stdin closed (a prompt cannot wait for an answer) and under a 16 GiB
address-space limit (a file asking for an absurd size fails in its own process, not the machine).

The goal, written before the run: every case refused cleanly; 0 executed, 0 read outside, 0 wrote
outside, 0 accepted silently, 0 tracebacks, 0 hung. The summary counts each column per kind of input
and says how far from the goal the run is; the results list each case with its line.

    python -m benchmarks.hostile_inputs            # all cases -> benchmarks/results/hostile_inputs.json
    python -m benchmarks.hostile_inputs --only negative_seed,processor_os_system_eval
    python -m benchmarks.hostile_inputs --only "code from a checkpoint"   # a kind: its cases
    python -m benchmarks.hostile_inputs --dry-run  # the cases, nothing run
    python -m benchmarks.hostile_inputs --markdown # the docs' tables of the results file

Scratch folders live under ``benchmarks/runs/hostile_inputs`` (not committed). The Hub cases use
the local Hub the tests use too (``benchmarks/local_hub.py``, reached through ``HF_ENDPOINT``) and
their LIBERO-shaped dataset builder (``benchmarks/libero_dataset.py``): only the network is replaced.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.common import (RESULTS_DIR, ROOT, RUNS_DIR, TINY_ARGS, cli_command, cli_env, dry_run,
                               measured_at_commit, run_cli, write_json)

RESULTS = RESULTS_DIR / "hostile_inputs.json"
SCRATCH = RUNS_DIR / "hostile_inputs"
COLUMNS = ("refused_cleanly", "executed", "read_outside", "wrote_outside", "accepted_silently", "traceback", "hung")
GOAL = {"refused_cleanly": "all", "executed": 0, "read_outside": 0, "wrote_outside": 0, "accepted_silently": 0,
        "traceback": 0, "hung": 0}
KINDS = ("bad input", "mistake", "hostile file", "code from a checkpoint", "read outside", "made-up result",
         "non-finite numbers", "resume record", "malformed file", "one rule per CLI")
EVAL = [sys.executable, "-m", "lerobot_amf.eval_cli"]
PLAN = [sys.executable, "-m", "lerobot_amf.plan_cli"]
PUSH = [sys.executable, "-m", "lerobot_amf.publish"]
PRE = "policy_preprocessor.json"
TIMEOUT_S = 180  # a case that is refused, or evaluates one episode per task
TRAIN_TIMEOUT_S = 600  # a case that would train (a tiny run takes about a minute here)
MEMORY_LIMIT = 16 * 2**30  # address space of each command: an absurd size fails in its own process
POOL = ["reach-v3", "drawer-close-v3"]  # the tiny run's pool
FORGED = 987654  # the forged evaluation's successes (of 1,000,000 episodes): a number no run measures

# A tiny ACT on two LIBERO tasks (the tests' LIBERO configuration), for the Hub dataset cases.
LIBERO_TASKS = ("libero_spatial/0", "libero_spatial/1")
LIBERO_ARGS = [
    "--policy.type=act", "--policy.chunk_size=4", "--policy.n_action_steps=4", "--policy.dim_model=32",
    "--policy.n_heads=2", "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1",
    "--policy.use_vae=false", "--policy.pretrained_backbone_weights=null", "--policy.device=cpu",
    "--policy.push_to_hub=false", "--env.type=libero", f"--env.task={','.join(LIBERO_TASKS)}",
    "--env.episode_length=4", "--amf.source=hub", "--amf.source_repo_id=lerobot/libero", "--amf.rounds=1",
    "--amf.demos_per_round=2", "--amf.steps_per_round=3", "--amf.eval_episodes=1", "--amf.eval_batch_size=1",
    "--amf.pretrain.steps=3", "--amf.pretrain.batch_size=8", "--amf.pretrain.demos_covered=2",
    "--amf.pretrain.demos_uncovered=1", "--batch_size=8", "--num_workers=0", "--seed=1",
]


@dataclass
class Attempt:
    """What one case runs, and what it watches."""

    command: list[str]
    watched: list[Path]  # must be unchanged (a path that did not exist must not appear)
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    hold: Callable[[], contextlib.AbstractContextManager] | None = None  # held while the command runs
    # outside the input's folder, named or linked to by it: any read under them is a read outside
    # (they are watched too)
    decoys: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)  # symlinks planted in the input that point outside
    timeout: int = TIMEOUT_S
    # the case's own judgement after the run: extra details, and "accepted_silently" if exit code 0
    # is not the measure (a forged number used is)
    judge: Callable[[], dict] | None = None


@dataclass
class Case:
    name: str
    kind: str  # one of KINDS
    what: str
    prepare: Callable[["Scratch", Path], Attempt]  # (shared fixtures, the case's own folder) -> attempt


# ---------------------------------------------------------------- shared fixtures, built on first use
class Scratch:
    def __init__(self, root: Path):
        self.root = root
        self.home = root / "lerobot_home"  # HF_LEROBOT_HOME: the pretraining cache of the tiny run
        self._built: dict[str, object] = {}

    def once(self, key: str, build):
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    @property
    def marker(self) -> Path:
        """The file a hostile command would create."""
        return self.root / "EXECUTED"

    def _tiny(self, name: str, *args: str) -> Path:
        """A finished tiny embedded run (the tests' tiny configuration) with ``args``, built once."""
        def build():
            out = self.root / name
            if not (out / "amf_report.json").exists():
                shutil.rmtree(out, ignore_errors=True)
                print(f"[hostile_inputs] building the {name} the cases use ...", flush=True)
                code, tail = run_cli([*TINY_ARGS, *args, f"--output_dir={out}"], cli_env(self.home),
                                     log=self.root / f"{name}.log")
                if code != 0:
                    raise RuntimeError(f"the {name} failed ({code}): {tail[-3:]}")
            return out
        return self.once(name, build)

    def tiny_run(self) -> Path:
        """A finished tiny embedded run (shared weights)."""
        return self._tiny("tiny_run")

    def checkpoint(self) -> Path:
        return self.tiny_run() / "checkpoints" / "last" / "pretrained_model"

    def generalist(self) -> Path:
        """The pretrained generalist the tiny run started from (in the pretraining cache): the
        checkpoint that carries the pretraining record and its demos."""
        start = json.loads((self.tiny_run() / "amf_ledger.jsonl").read_text().splitlines()[0])
        return Path(start["model"]["pretrained_path"])

    def routed_model(self) -> Path:
        """The routed model (LoRA adapter per task) of a finished tiny run with ``--amf.isolation=lora``."""
        return self._tiny("tiny_lora_run", "--amf.isolation=lora") / "checkpoints" / "last" / "routed_model"

    def copy_of_run(self, folder: Path) -> Path:
        run = folder / "run"
        shutil.copytree(self.tiny_run(), run, symlinks=True)
        return run

    def copy_of(self, source: Path, dest: Path) -> Path:
        """A copy of a checkpoint or routed model (links kept; no evaluation an older version kept in it)."""
        shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns("amf_eval_*.json"))
        return dest

    def hostile_checkpoint(self, folder: Path, step: dict, source: Path | None = None) -> Path:
        """A copy of the tiny run's checkpoint (or of ``source``) whose pre-processor starts with ``step``."""
        ckpt = self.copy_of(source or self.checkpoint(), folder / "checkpoint")
        add_step(ckpt, step)
        return ckpt

    def libero_dataset(self) -> Path:
        """A LIBERO-shaped LeRobot dataset of the two tasks."""
        def build():
            from benchmarks.libero_dataset import build_libero_dataset

            from lerobot_amf.envs.libero import LiberoCatalog

            root = self.root / "libero_dataset"
            if not (root / "meta" / "info.json").exists():
                shutil.rmtree(root, ignore_errors=True)
                catalog = LiberoCatalog()
                build_libero_dataset(root, [catalog.instruction(t) for t in catalog.parse_pool(",".join(LIBERO_TASKS))],
                                     episodes_per_task=3, frames_per_episode=6, image_size=32, episodes_per_file=2)
            return root
        return self.once("libero_dataset", build)

    def local_hub(self):
        """The local Hub serving the dataset as ``lerobot/libero``; its URL goes to the
        command as ``HF_ENDPOINT`` (huggingface_hub there runs unchanged)."""
        def build():
            from benchmarks.local_hub import LocalHub

            hub = LocalHub({"lerobot/libero": self.libero_dataset()})
            hub.__enter__()
            return hub
        return self.once("local_hub", build)

    def serve(self, folder: Path, repo_id: str, hf_cache: Path) -> dict:
        """Serve ``folder`` as the (model) repo ``repo_id`` on the local Hub; the environment a
        command needs to reach it, online, with a Hub cache of its own."""
        hub = self.local_hub()
        hub.repos[repo_id] = folder
        return {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hf_cache)}

    def close(self) -> None:
        hub = self._built.get("local_hub")
        if hub is not None:
            hub.__exit__(None, None, None)


# ---------------------------------------------------------------- commands
def train(*args: str) -> list[str]:
    return cli_command(list(args))


def tiny(out: Path, *args: str) -> list[str]:
    return train(*TINY_ARGS, *args, f"--output_dir={out}")


def tiny_from(policy_path: Path, out: Path, *args: str) -> list[str]:
    """The tiny run, starting from ``--policy.path=policy_path`` instead of the embedded default."""
    return train(*TINY_ARGS[1:], f"--policy.path={policy_path}", *args, f"--output_dir={out}")


def evaluate(policy_path: Path | str, out: Path, *args: str) -> list[str]:
    """``lerobot-amf-eval`` of ``policy_path`` on the tiny pool, one short episode per task."""
    return [*EVAL, f"--policy.path={policy_path}", "--policy.device=cpu", "--env.type=mw_state",
            f"--env.task={','.join(POOL)}", "--env.episode_length=5", "--amf.eval_episodes=1",
            "--amf.eval_batch_size=1", f"--output_dir={out}", *args]


def plan(policy_path: Path, out: Path, *args: str) -> list[str]:
    """``lerobot-amf-plan`` of ``policy_path`` for the tiny pool, without a simulator."""
    return [*PLAN, f"--policy.path={policy_path}", "--policy.device=cpu", "--amf.demos=2",
            f"--amf.tasks={','.join(POOL)}", "--amf.catalog=mw_state", f"--output_dir={out}", *args]


def libero_train(copy: Path, folder: Path, *args: str) -> list[str]:
    """The tiny LIBERO run whose Hub source is the local copy ``copy`` (nothing downloaded)."""
    return train(*LIBERO_ARGS, f"--amf.source_root={copy}", *args, f"--output_dir={folder / 'run'}",
                 f"--amf.pretrain.cache_dir={folder / 'pretrained'}")


# ---------------------------------------------------------------- what hostile inputs are made of
EVIL_MODULE = '''"""Shipped next to a tokenizer or model config: runs when imported."""
import pathlib

pathlib.Path({marker!r}).write_text("attacker code ran in " + __name__)


class Evil:  # whatever transformers asks for: a processor, a tokenizer, a config, a model
    @classmethod
    def register_for_auto_class(cls, *args, **kwargs):
        pass

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls()


EvilProcessor = EvilTokenizer = EvilConfig = EvilModel = Evil
'''


def attacker_repo(folder: Path, marker: Path) -> Path:
    """A folder an attacker publishes as a tokenizer / processor / model: its configs' ``auto_map``
    name ``evil.py`` beside them, which creates ``marker`` when imported."""
    folder.mkdir(parents=True)
    (folder / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    tokenizer = ["evil.EvilTokenizer", None]
    auto_map = {"AutoProcessor": "evil.EvilProcessor", "AutoTokenizer": tokenizer, "AutoConfig": "evil.EvilConfig",
                "AutoModel": "evil.EvilModel"}
    processor = {"auto_map": auto_map, "processor_class": "EvilProcessor"}
    (folder / "processor_config.json").write_text(json.dumps(processor))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": tokenizer},
                                                              "tokenizer_class": "EvilTokenizer"}))
    (folder / "config.json").write_text(json.dumps({"auto_map": auto_map, "model_type": "evil"}))
    return folder


def plain_tokenizer(folder: Path) -> Path:
    """A real (tiny, word-level) tokenizer with no code in it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "reach": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                              "pad_token": "[PAD]", "unk_token": "[UNK]"}))
    return folder


def add_step(checkpoint: Path, step: dict, processor: str = PRE) -> None:
    """Put ``step`` first in a checkpoint's processor file."""
    config = json.loads((checkpoint / processor).read_text())
    config["steps"] = [step, *config["steps"]]
    (checkpoint / processor).write_text(json.dumps(config, indent=2))


def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def state_file(checkpoint: Path) -> Path:
    """The pre-processor's normaliser state (normalisation statistics) of a checkpoint."""
    return next(checkpoint.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))


def link_out(inside: Path, outside: Path) -> Path:
    """Move ``inside`` to ``outside`` and leave a symlink to it in its place (the input works as
    before, but reads a file outside its folder)."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(inside, outside)
    inside.symlink_to(outside)
    return inside


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def files_holding(folder: Path, needle: str) -> list[str]:
    """Names of the files under ``folder`` whose text holds ``needle``."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and needle in p.read_text(errors="replace"))


def copied_into(folder: Path, size: int = 50 * 2**20) -> dict:
    """The case's judgement of a run given a 100 MB file: which of its files are over ``size``
    bytes (the file copied into the ledger, a checkpoint's config, ...)."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()] if folder.is_dir() else []
    return {"run_files_over_50_mb": sorted(p.relative_to(folder).as_posix() for p in files if p.stat().st_size > size),
            "largest_run_file_bytes": max((p.stat().st_size for p in files), default=0)}


# ---------------------------------------------------------------- the cases: bad input, mistakes, hostile files
def bad_flags(name: str, *flags: str, what: str | None = None, timeout: int = TIMEOUT_S) -> Case:
    """A bad value on the tiny run's command line (``what``: the flags, unless said otherwise):
    the new run directory must not appear."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        out = folder / "run"
        return Attempt(tiny(out, *flags), [out], timeout=timeout)
    return Case(name, "bad input", what or " ".join(flags), prepare)


def resume_with(*args: str):
    """A case that resumes a copy of the tiny run with ``args``: nothing in it may change."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        run = s.copy_of_run(folder)
        return Attempt(tiny(run, "--resume=true", *args), [run])
    return prepare


def _output_dir_is_a_file(s, folder):
    target = folder / "notes.txt"
    target.write_text("my notes\n")
    return Attempt(tiny(target), [target])


def _missing_two_part_policy_path(s, folder):
    out = folder / "run"
    return Attempt(train(*TINY_ARGS[1:], "--policy.path=base/pretrained_model", f"--output_dir={out}"), [out],
                   cwd=folder)


def _partition_map_missing(s, folder):
    out = folder / "run"
    return Attempt(tiny(out, "--amf.isolation=lora", f"--amf.partitions={folder / 'no_such_map.json'}"), [out])


def _live_run_directory(s, folder):
    from lerobot_amf.locks import exclusive

    run = s.copy_of_run(folder)
    return Attempt(tiny(run, "--resume=true"), [run], hold=lambda: exclusive(run, "Run directory"))


def _not_a_run(s, folder):
    out = folder / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    return Attempt(tiny(out, "--resume=true"), [out])


def _corrupt_ledger(s, folder):
    """A line in the middle of the ledger garbled (a torn *last* line is what a stop leaves; it is
    cut and the run resumes, by design: not a case here)."""
    run = s.copy_of_run(folder)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"
    ledger.write_text("".join(lines))
    return Attempt(tiny(run, "--resume=true"), [run])


def _hostile_step(step_of: Callable[[Path], dict], cli: str):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        ckpt = s.hostile_checkpoint(folder, step_of(s.marker))
        out = folder / "out"
        command = evaluate(ckpt, out) if cli == "eval" else train(*TINY_ARGS[1:], f"--policy.path={ckpt}",
                                                                  f"--output_dir={out}")
        return Attempt(command, [out, ckpt])
    return prepare


def _routed_model(groups: dict, s: Scratch, folder: Path) -> Path:
    routed = folder / "routed_model"
    (routed / "adapters").mkdir(parents=True)
    (routed / "routing.json").write_text(json.dumps({
        "format": "lerobot_amf.routed/1", "mode": "lora",
        "base": {"pretrained_path": str(s.checkpoint()), "type": "diffusion"},
        "partitions": {"scheme": "per_task", "groups": groups}, "task_of_instruction": {}}))
    return routed


def _routing_climbs_out(s, folder):
    outside = folder / "secret"
    outside.mkdir()
    routed = _routed_model({"../../secret": ["reach-v3"]}, s, folder)
    out = folder / "out"
    return Attempt([*EVAL, f"--policy.path={routed}", "--policy.device=cpu", "--env.type=mw_state",
                    "--env.task=reach-v3", "--env.episode_length=5", "--amf.eval_episodes=1",
                    "--amf.eval_batch_size=1", f"--output_dir={out}"], [out, routed, outside])


def libero_copy(s: Scratch, folder: Path) -> Path:
    copy = folder / "libero_copy"
    shutil.copytree(s.libero_dataset(), copy)
    return copy


def _hostile_dataset(key: str, template: str):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        copy = libero_copy(s, folder)
        edit_json(copy / "meta" / "info.json", lambda info: info.__setitem__(key, template))
        return Attempt(libero_train(copy, folder), [folder / "run", copy])
    return prepare


def _other_revision_in_the_copy(s, folder):
    copy = libero_copy(s, folder)
    marker = copy / ".cache" / "lerobot_amf" / "source.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"repo_id": "lerobot/libero", "revision": "v3.0"}))
    return Attempt(libero_train(copy, folder, "--amf.source_revision=main"), [folder / "run", copy])


def _over_the_byte_cap(s, folder):
    hub = s.local_hub()
    out = folder / "run"
    return Attempt(train(*LIBERO_ARGS, "--amf.source_max_bytes_per_round=1000", f"--amf.source_root={folder / 'cache'}",
                         f"--output_dir={out}", f"--amf.pretrain.cache_dir={folder / 'pretrained'}"), [out],
                   env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(folder / "hf_cache")})


def _push(*args: str, env: dict | None = None):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        run = s.copy_of_run(folder)
        return Attempt([*PUSH, str(run), *args], [run], env=env or {})
    return prepare


# ---------------------------------------------------------------- code from a checkpoint
def tokenizer_step(name: str, registered: bool = True) -> dict:
    """LeRobot 0.6.1's action tokenizer step (``trust_remote_code`` left at its default, True),
    loading its processor from ``name``; named by registry name, or by class path."""
    config = {"action_tokenizer_name": name, "paligemma_tokenizer_name": name}
    if registered:
        return {"registry_name": "action_tokenizer_processor", "config": config}
    return {"class": "lerobot.processor.tokenizer_processor.ActionTokenizerProcessorStep", "config": config}


def _code_through_step(cli: str, registered: bool = True):
    """The action tokenizer step, naming an attacker's folder outside the checkpoint."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        attacker = attacker_repo(folder / "attacker", s.marker)
        ckpt = s.hostile_checkpoint(folder, tokenizer_step(str(attacker), registered))
        out = folder / "out"
        if cli == "eval":
            return Attempt(evaluate(ckpt, out), [out, ckpt], decoys=[attacker])
        return Attempt(tiny_from(ckpt, out), [out, ckpt], decoys=[attacker], timeout=TRAIN_TIMEOUT_S)
    return prepare


def _code_through_routed_model(s, folder):
    attacker = attacker_repo(folder / "attacker", s.marker)
    routed = s.copy_of(s.routed_model(), folder / "routed_model")
    add_step(routed, tokenizer_step(str(attacker)))
    out = folder / "out"  # the base named by the user, as a local base must be: the processor step is the attack
    return Attempt(evaluate(routed, out, f"--amf.base_path={s.generalist()}"), [out, routed], decoys=[attacker])


def _code_through_the_hub(s, folder):
    """The checkpoint and the attacker's 'tokenizer' are both Hub repos (served by the local Hub)."""
    attacker = attacker_repo(folder / "attacker", s.marker)
    ckpt = s.hostile_checkpoint(folder, tokenizer_step("someone/fast-action-tokenizer"))
    env = s.serve(attacker, "someone/fast-action-tokenizer", folder / "hf_cache")
    s.serve(ckpt, "someone/policy", folder / "hf_cache")
    out = folder / "out"
    return Attempt(evaluate("someone/policy", out), [out, ckpt, attacker], env=env)


def _code_inside_the_checkpoint(s, folder):
    """The attacker's folder shipped inside the checkpoint (remote code is never enabled: refused too)."""
    ckpt = s.copy_of(s.checkpoint(), folder / "checkpoint")
    attacker_repo(ckpt / "action_tokenizer", s.marker)
    add_step(ckpt, tokenizer_step(str(ckpt / "action_tokenizer")))
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt])


def _text_tokenizer_with_code(s, folder):
    attacker = attacker_repo(folder / "attacker", s.marker)
    ckpt = s.hostile_checkpoint(folder, {"registry_name": "tokenizer_processor",
                                         "config": {"tokenizer_name": str(attacker), "max_length": 8}})
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt], decoys=[attacker])


def _code_through_reward_classifier(s, folder):
    """LeRobot 0.6.1's ``reward_classifier_processor`` loads ``Classifier.from_pretrained(pretrained_path)``,
    whose config's ``model_name`` goes to ``AutoModel.from_pretrained(..., trust_remote_code=True)``
    (hard-coded: no config key turns it off)."""
    attacker = attacker_repo(folder / "attacker", s.marker)
    classifier = folder / "classifier"
    classifier.mkdir()
    (classifier / "config.json").write_text(json.dumps({"type": "reward_classifier", "model_name": str(attacker)}))
    ckpt = s.hostile_checkpoint(folder, {"registry_name": "reward_classifier_processor",
                                         "config": {"pretrained_path": str(classifier)}})
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt], decoys=[attacker, classifier])


# ---------------------------------------------------------------- reads outside the folder
def _linked_checkpoint_file(name_of: Callable[[Path], Path]):
    """A checkpoint file moved out of the folder, a symlink left in its place."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        ckpt = s.copy_of(s.checkpoint(), folder / "checkpoint")
        inside = name_of(ckpt)
        link = link_out(inside, folder / "outside" / inside.name)
        out = folder / "out"
        return Attempt(evaluate(ckpt, out), [out, ckpt], decoys=[folder / "outside"], links=[link])
    return prepare


def _linked_adapter(s, folder):
    routed = s.copy_of(s.routed_model(), folder / "routed_model")
    inside = next((routed / "adapters").rglob("adapter_model.safetensors"))
    link = link_out(inside, folder / "outside" / "adapter_model.safetensors")
    out = folder / "out"
    return Attempt(evaluate(routed, out, f"--amf.base_path={s.generalist()}"), [out, routed],
                   decoys=[folder / "outside"], links=[link])


def _routing_base(base_of: Callable[[Path], str], cwd_of: Callable[[Path], Path] | None = None):
    """A routed model whose routing.json names its base as ``base_of(folder)``: a copy of the
    generalist at ``<folder>/elsewhere/checkpoint``, outside the routed model's folder."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        decoy = s.copy_of(s.generalist(), folder / "elsewhere" / "checkpoint")
        routed = s.copy_of(s.routed_model(), folder / "routed_model")
        edit_json(routed / "routing.json", lambda r: r["base"].__setitem__("pretrained_path", base_of(folder)))
        cwd = cwd_of(folder) if cwd_of else None
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
        out = folder / "out"
        # the decoy is the checkpoint itself: ``python -m`` lists its working directory (the bare-name
        # case runs from ``elsewhere/``) for imports, which is Python's start-up, not a read of the base
        return Attempt(evaluate(routed, out), [out, routed], cwd=cwd, decoys=[decoy])
    return prepare


def pretraining_record_pointing_out(s: Scratch, folder: Path) -> tuple[Path, Path]:
    """A copy of the generalist at ``<folder>/a/checkpoint`` whose pretraining record's demo root is
    ``../../elsewhere``: its demos moved there, outside its folder. (checkpoint, elsewhere)"""
    from lerobot_amf.pretrain import PRETRAIN_DEMOS_DIR, PRETRAIN_RECORD

    ckpt = s.copy_of(s.generalist(), folder / "a" / "checkpoint")
    elsewhere = folder / "elsewhere"
    shutil.move(ckpt / PRETRAIN_DEMOS_DIR, elsewhere)
    edit_json(ckpt / PRETRAIN_RECORD, lambda r: r["demos"].__setitem__("root", "../../elsewhere"))
    return ckpt, elsewhere


def _pretraining_demos_outside_train(s, folder):
    ckpt, elsewhere = pretraining_record_pointing_out(s, folder)
    out = folder / "run"
    return Attempt(tiny_from(ckpt, out, "--amf.strategy=amf"), [out, ckpt], decoys=[elsewhere],
                   timeout=TRAIN_TIMEOUT_S)


def _pretraining_demos_outside_plan(s, folder):
    ckpt, elsewhere = pretraining_record_pointing_out(s, folder)
    out = folder / "plan"
    return Attempt(plan(ckpt, out), [out, ckpt], decoys=[elsewhere])


def _fifo_state_file(s, folder):
    ckpt = s.copy_of(s.checkpoint(), folder / "checkpoint")
    stats = state_file(ckpt)
    stats.unlink()
    os.mkfifo(stats)
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt])


def _linked_parquet(s, folder):
    copy = libero_copy(s, folder)
    decoy = folder / "outside" / "file-099.parquet"
    decoy.parent.mkdir()
    shutil.copy(copy / "data" / "chunk-000" / "file-000.parquet", decoy)
    link = copy / "data" / "chunk-000" / "file-099.parquet"
    link.symlink_to(decoy)
    return Attempt(libero_train(copy, folder), [folder / "run", copy], decoys=[decoy.parent], links=[link],
                   timeout=TRAIN_TIMEOUT_S)


def _tokenizer_at_an_absolute_path(s, folder):
    tokenizer = plain_tokenizer(folder / "outside" / "tokenizer")
    ckpt = s.hostile_checkpoint(folder, {"registry_name": "tokenizer_processor",
                                         "config": {"tokenizer_name": str(tokenizer), "max_length": 8}})
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt], decoys=[tokenizer.parent])


# ---------------------------------------------------------------- made-up results
def old_cached_eval_name(run: Path) -> str:
    """The file name under which versions before 0875cfb kept the pretrained policy's evaluation in
    the checkpoint folder, for the tiny run's protocol (anyone can compute it)."""
    start = json.loads((run / "amf_ledger.jsonl").read_text().splitlines()[0])
    protocol = {k: v for k, v in start["eval_protocol"].items() if k != "images_resized_to"}
    key = [start["pool"], protocol, start["config"]["amf"]["eval_seed"], start["config"]["amf"]["normalization"]]
    return f"amf_eval_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.json"


def forged_result(pool: list[str]) -> dict:
    entry = {"successes": FORGED, "episodes": 1_000_000, "success_rate": FORGED / 1_000_000, "ci95": [0.9874, 0.9879]}
    return {"per_task": {t: dict(entry) for t in pool}, "per_suite": {"easy": {**entry, "tasks": pool}},
            "overall": {**entry, "tasks": pool}}


def _forged_evaluation(s, folder):
    """The generalist (it carries the pretraining record) with a forged evaluation of itself under
    the name the old code read and under the names of this tool's and LeRobot's evaluation files."""
    ckpt = s.copy_of(s.generalist(), folder / "checkpoint")
    result = forged_result(POOL)
    (ckpt / old_cached_eval_name(s.tiny_run())).write_text(json.dumps(result))
    (ckpt / "amf_eval_report.json").write_text(json.dumps({"format": "lerobot_amf.eval/1", "eval": result}))
    (ckpt / "eval_info.json").write_text(json.dumps({"overall": result["overall"], "per_task": result["per_task"]}))
    out = folder / "run"  # not watched: a run that ignores the forged files is right too

    def judge() -> dict:
        used = files_holding(out, str(FORGED))
        return {"forged_result_used": bool(used), "forged_result_in": used, "accepted_silently": bool(used),
                "ignored_cleanly": not used}
    return Attempt(tiny_from(ckpt, out), [ckpt], timeout=TRAIN_TIMEOUT_S, judge=judge)


# ---------------------------------------------------------------- non-finite numbers
def _nan_normaliser_state(s, folder):
    from safetensors.numpy import load_file, save_file

    ckpt = s.copy_of(s.checkpoint(), folder / "checkpoint")
    stats = state_file(ckpt)
    tensors = load_file(str(stats))
    for key in [k for k in tensors if k.endswith("mean")]:
        tensors[key] = tensors[key] * float("nan")
    save_file(tensors, str(stats))
    out = folder / "out"
    return Attempt(evaluate(ckpt, out), [out, ckpt])


def _nan_source_stats(s, folder):
    copy = libero_copy(s, folder)

    def nan_mean(stats):
        stats["action"]["mean"] = [float("nan")] * len(stats["action"]["mean"])
    edit_json(copy / "meta" / "stats.json", nan_mean)
    return Attempt(libero_train(copy, folder, "--amf.normalization=source"), [folder / "run", copy],
                   timeout=TRAIN_TIMEOUT_S)


def _nan_actions(s, folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = libero_copy(s, folder)
    for path in sorted((copy / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        column = table.schema.field("action")
        width = len(table.column("action")[0].as_py())
        nan = pa.array([[float("nan")] * width] * table.num_rows, type=column.type)
        pq.write_table(table.set_column(table.schema.get_field_index("action"), column, nan), path)
    return Attempt(libero_train(copy, folder), [folder / "run", copy], timeout=TRAIN_TIMEOUT_S)


# ---------------------------------------------------------------- resume trusts the ledger
def _tampered_ledger(edit: Callable[[list[dict]], None]):
    """A copy of the finished tiny run whose ledger's demo records were edited, then ``--resume=true``:
    the ledger must be cross-checked against the demo dataset, and nothing may change."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        run = s.copy_of_run(folder)
        ledger = run / "amf_ledger.jsonl"
        lines = ledger.read_text().splitlines()
        records = [json.loads(line) for line in lines]
        edit([r for r in records if r["event"] == "demos_pulled"])
        # only the edited lines are written anew: the others stay byte for byte
        ledger.write_text("".join((line if json.loads(line) == r else json.dumps(r, sort_keys=True)) + "\n"
                                  for line, r in zip(lines, records)))
        return Attempt(tiny(run, "--resume=true"), [run], timeout=TRAIN_TIMEOUT_S)
    return prepare


def _retag(pulled):
    pulled[0]["demos"][0]["task"] = "window-open-v3"


def _duplicate(pulled):
    pulled[0]["demos"].append(dict(pulled[0]["demos"][0]))


def _extra(pulled):
    last = pulled[-1]["demos"][-1]
    episode = 1 + max(d["episode_index"] for p in pulled for d in p["demos"])
    last_id = last["demo_id"].rsplit("/", 1)[0]
    pulled[-1]["demos"].append({**last, "demo_id": f"{last_id}/99", "episode_index": episode})


def _frame_count(pulled):
    pulled[0]["demos"][0]["length"] += 10


# ---------------------------------------------------------------- malformed files
def _edited_checkpoint(edit: Callable[[Path], None], source: Callable[[Scratch], Path] | None = None):
    """A copy of the tiny run's checkpoint (or of ``source``), edited, then ``lerobot-amf-eval``."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        ckpt = s.copy_of((source or Scratch.checkpoint)(s), folder / "checkpoint")
        edit(ckpt)
        out = folder / "out"
        return Attempt(evaluate(ckpt, out), [out, ckpt])
    return prepare


def _config_value(key: str, value):
    return lambda ckpt: edit_json(ckpt / "config.json", lambda c: c.__setitem__(key, value))


def _unknown_step_keyword(ckpt: Path) -> None:
    def edit(config):
        step = next(st for st in config["steps"] if st.get("registry_name") == "normalizer_processor")
        step["config"]["evil_keyword"] = 1
    edit_json(ckpt / PRE, edit)


def _adapter_rank(ckpt: Path) -> None:
    for path in (ckpt / "adapters").rglob("adapter_config.json"):
        edit_json(path, lambda c: c.__setitem__("r", 10**9))


def _routing_rank(ckpt: Path) -> None:
    edit_json(ckpt / "routing.json", lambda r: r.setdefault("lora", {}).__setitem__("r", 10**9))


def _nested_partition_file(s, folder):
    path = folder / "partitions.json"
    path.write_text("[" * 100_000)
    out = folder / "run"
    return Attempt(tiny(out, "--amf.isolation=lora", f"--amf.partitions={path}"), [out, path], timeout=TRAIN_TIMEOUT_S)


def _nested_recipe(s, folder):
    path = folder / "recipe.json"
    path.write_text("[" * 100_000)
    out = folder / "run"
    return Attempt(train(f"--config_path={path}", *TINY_ARGS, f"--output_dir={out}"), [out, path],
                   timeout=TRAIN_TIMEOUT_S)


def _episode_index(value: int):
    """A LIBERO-shaped copy whose ``meta/episodes`` gives its second episode the index ``value``."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        import pyarrow as pa
        import pyarrow.parquet as pq

        copy = libero_copy(s, folder)
        path = copy / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        table = pq.read_table(path)
        index = table.schema.get_field_index("episode_index")
        values = table.column("episode_index").to_pylist()
        values[1] = value
        column = table.schema.field(index)
        table = table.set_column(index, column, pa.array(values, type=column.type))
        pq.write_table(table, path)
        return Attempt(libero_train(copy, folder), [folder / "run", copy], timeout=TRAIN_TIMEOUT_S)
    return prepare


def _plan_on_inflated_dataset(s, folder):
    demos = folder / "demos"
    shutil.copytree(s.tiny_run() / "demos", demos)
    edit_json(demos / "meta" / "info.json", lambda info: info.__setitem__("total_episodes", 1000))
    out = folder / "plan"
    return Attempt(plan(s.checkpoint(), out, "--dataset.repo_id=local/amf_demos", f"--dataset.root={demos}"),
                   [out, demos])


# ---------------------------------------------------------------- one rule for every CLI
def home_stand_in(folder: Path) -> Path:
    """An existing, non-empty folder that is not a run directory: the user's home, as far as a
    command is concerned (``--output_dir=/`` or ``~`` is never passed for real)."""
    home = folder / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "notes.txt").write_text("my notes\n")
    return home


def _eval_into_home(s, folder):
    home = home_stand_in(folder)
    return Attempt(evaluate(s.checkpoint(), home), [home])


def _plan_into_home(s, folder):
    home = home_stand_in(folder)
    return Attempt(plan(s.checkpoint(), home), [home])


def _huge_partition_file(s, folder):
    """100 MB: a partition map, then holes (a sparse file: nothing is written for them)."""
    path = folder / "partitions.json"
    with open(path, "wb") as f:
        f.write(json.dumps({"reach": ["reach-v3"], "drawer": ["drawer-close-v3"]}).encode()[:-1])
        f.seek(100 * 2**20 - 1)
        f.write(b"}")
    out = folder / "run"

    return Attempt(tiny(out, "--amf.isolation=lora", f"--amf.partitions={path}"), [out, path],
                   timeout=TRAIN_TIMEOUT_S, judge=lambda: copied_into(out))


def _huge_recipe(s, folder):
    """A 100 MB recipe: a valid one whose ``job_name`` is 100 MB long (copied into every record?)."""
    path = folder / "recipe.json"
    with open(path, "w") as f:
        f.write('{"job_name": "')
        for _ in range(100):
            f.write("a" * 2**20)
        f.write('"}')
    out = folder / "run"

    return Attempt(train(f"--config_path={path}", *TINY_ARGS, f"--output_dir={out}"), [out, path],
                   timeout=TRAIN_TIMEOUT_S, judge=lambda: copied_into(out))


CASES = [
    # --- bad values, as a new user types them
    bad_flags("unknown_strategy", "--amf.strategy=bogus"),
    bad_flags("zero_rounds", "--amf.rounds=0"),
    bad_flags("word_for_a_number", "--amf.rounds=two"),
    bad_flags("negative_seed", "--seed=-1"),
    bad_flags("negative_eval_seed", "--amf.eval_seed=-1"),
    bad_flags("negative_action_noise", "--amf.action_noise=-0.1"),
    bad_flags("replay_fraction_of_one", "--amf.isolation=shared_replay", "--amf.replay_fraction=1.0",
              what="--amf.replay_fraction=1.0"),
    bad_flags("zero_byte_cap", "--amf.source_max_bytes_per_round=0"),
    bad_flags("unknown_flag", "--amf.bogus=1"),
    bad_flags("unknown_task", "--env.task=reach-v3,not-a-task-v3"),
    bad_flags("budget_over_the_rounds", "--amf.budget=100", what="--amf.budget=100 with 2 rounds of 2 demos"),
    bad_flags("target_weight_outside_the_pool", '--amf.target_weights={"window-open-v3": 1}'),
    bad_flags("frozen_base_with_demo_stats", "--amf.isolation=lora", "--amf.normalization=demos"),
    bad_flags("hub_source_without_repo", "--amf.source=hub", what="--amf.source=hub without --amf.source_repo_id"),
    bad_flags("push_without_repo", "--amf.push_to_hub=true", what="--amf.push_to_hub=true without --amf.repo_id"),
    Case("missing_partition_map", "bad input", "--amf.partitions=<a JSON file that does not exist>",
         _partition_map_missing),
    Case("output_dir_is_a_file", "bad input", "--output_dir=<an existing file>", _output_dir_is_a_file),
    Case("missing_two_part_policy_path", "bad input",
         "--policy.path=base/pretrained_model, a local folder that does not exist here", _missing_two_part_policy_path),
    # --- everyday mistakes with a run directory
    Case("second_run_on_a_live_directory", "mistake", "--resume=true while another run holds the directory",
         _live_run_directory),
    Case("resume_a_folder_that_is_not_a_run", "mistake", "--resume=true on a folder of photos", _not_a_run),
    Case("resume_with_another_strategy", "mistake", "--resume=true --amf.strategy=amf (the run was uniform)",
         resume_with("--amf.strategy=amf")),
    Case("resume_with_another_seed", "mistake", "--resume=true --seed=7", resume_with("--seed=7")),
    Case("resume_with_another_source", "mistake", "--resume=true --amf.action_noise=0.3 (the demos would differ)",
         resume_with("--amf.action_noise=0.3")),
    Case("resume_on_a_corrupt_ledger", "mistake", "--resume=true on a ledger whose third line is garbled",
         _corrupt_ledger),
    Case("push_a_bad_repo_id", "bad input", "python -m lerobot_amf.publish <run> --repo_id='not a repo'",
         _push("--repo_id=not a repo")),
    Case("push_offline", "bad input", "python -m lerobot_amf.publish <run> --repo_id=me/run with HF_HUB_OFFLINE=1",
         _push("--repo_id=me/run", env={"HF_HUB_OFFLINE": "1"})),
    # --- files from others
    Case("processor_os_system_eval", "hostile file",
         'lerobot-amf-eval of a checkpoint whose pre-processor step is {"class": "os.system"}',
         _hostile_step(lambda m: {"class": "os.system", "config": {"command": f"touch {m}"}}, "eval")),
    Case("processor_os_system_train", "hostile file",
         'lerobot-amf-train --policy.path=<that checkpoint>',
         _hostile_step(lambda m: {"class": "os.system", "config": {"command": f"touch {m}"}}, "train")),
    Case("processor_subprocess", "hostile file", 'a pre-processor step {"class": "subprocess.run"}',
         _hostile_step(lambda m: {"class": "subprocess.run", "config": {"args": ["touch", str(m)]}}, "eval")),
    Case("processor_unregistered_name", "hostile file", 'a pre-processor step {"registry_name": "evil_step"}',
         _hostile_step(lambda m: {"registry_name": "evil_step", "config": {}}, "eval")),
    Case("processor_state_file_outside", "hostile file",
         "a normaliser step whose state_file is ../../../etc/passwd",
         _hostile_step(lambda m: {"registry_name": "normalizer_processor", "config": {},
                                  "state_file": "../../../etc/passwd"}, "eval")),
    Case("routing_partition_climbs_out", "hostile file", 'a routing.json partition named "../../secret"',
         _routing_climbs_out),
    Case("info_json_absolute_data_path", "hostile file", "a dataset whose info.json data_path is /etc/passwd",
         _hostile_dataset("data_path", "/etc/passwd")),
    Case("info_json_video_path_climbs_out", "hostile file",
         "a dataset whose info.json video_path is videos/{video_key}/../../../../x/{chunk_index}-{file_index}.mp4",
         _hostile_dataset("video_path", "videos/{video_key}/../../../../x/{chunk_index}-{file_index}.mp4")),
    Case("local_copy_of_another_revision", "mistake",
         "--amf.source_revision=main with --amf.source_root at a copy of v3.0", _other_revision_in_the_copy),
    Case("round_over_the_byte_cap", "bad input",
         "--amf.source_max_bytes_per_round=1000 on a dataset served by the (local) Hub", _over_the_byte_cap),
    # --- code from a checkpoint: a registered LeRobot step whose config names something loadable
    Case("action_tokenizer_code_eval", "code from a checkpoint",
         "lerobot-amf-eval of a checkpoint whose pre-processor has LeRobot's action_tokenizer_processor naming an "
         "attacker's folder outside it (auto_map -> evil.py; trust_remote_code left at its default, true)",
         _code_through_step("eval")),
    Case("action_tokenizer_code_train", "code from a checkpoint",
         "lerobot-amf-train --policy.path=<that checkpoint>", _code_through_step("train")),
    Case("action_tokenizer_code_routed_model", "code from a checkpoint",
         "lerobot-amf-eval of a routed_model/ (a tiny --amf.isolation=lora run's) with that step in its pre-processor",
         _code_through_routed_model),
    Case("action_tokenizer_code_hub", "code from a checkpoint",
         "lerobot-amf-eval --policy.path=someone/policy (a Hub repo, local Hub) whose step names the Hub repo "
         "someone/fast-action-tokenizer holding the attacker's code", _code_through_the_hub),
    Case("action_tokenizer_code_by_class_path", "code from a checkpoint",
         'that step named by "class": "lerobot.processor.tokenizer_processor.ActionTokenizerProcessorStep" '
         "instead of its registry name", _code_through_step("eval", registered=False)),
    Case("action_tokenizer_code_inside_checkpoint", "code from a checkpoint",
         "that step naming the attacker's folder shipped inside the checkpoint itself", _code_inside_the_checkpoint),
    Case("text_tokenizer_code", "code from a checkpoint",
         "a tokenizer_processor step whose tokenizer_name is the attacker's folder outside the checkpoint "
         "(AutoTokenizer, trust_remote_code unset)", _text_tokenizer_with_code),
    Case("reward_classifier_code", "code from a checkpoint",
         "a reward_classifier_processor step whose pretrained_path is a classifier folder outside, its model_name "
         "the attacker's folder (LeRobot loads it with trust_remote_code=True, hard-coded)",
         _code_through_reward_classifier),
    # --- reads outside the input's folder
    Case("linked_state_file", "read outside",
         "a checkpoint whose normaliser state file is a symlink to a file outside it",
         _linked_checkpoint_file(state_file)),
    Case("linked_model_weights", "read outside",
         "a checkpoint whose model.safetensors is a symlink to a file outside it",
         _linked_checkpoint_file(lambda ckpt: ckpt / "model.safetensors")),
    Case("linked_config_json", "read outside", "a checkpoint whose config.json is a symlink to a file outside it",
         _linked_checkpoint_file(lambda ckpt: ckpt / "config.json")),
    Case("linked_lora_adapter", "read outside",
         "a routed_model/ whose adapter_model.safetensors is a symlink to a file outside it", _linked_adapter),
    Case("routing_base_absolute_elsewhere", "read outside",
         "a routed_model/ whose routing.json base.pretrained_path is the absolute path of a checkpoint elsewhere",
         _routing_base(lambda folder: str(folder / "elsewhere" / "checkpoint"))),
    Case("routing_base_climbs_out", "read outside",
         "routing.json base.pretrained_path ../elsewhere/checkpoint (outside the routed folder, from it and from "
         "the working directory)",
         _routing_base(lambda folder: "../elsewhere/checkpoint", lambda folder: folder / "work")),
    Case("routing_base_bare_name", "read outside",
         "routing.json base.pretrained_path 'checkpoint', a bare name found in the working directory",
         _routing_base(lambda folder: "checkpoint", lambda folder: folder / "elsewhere")),
    Case("pretraining_demos_outside_train", "read outside",
         "lerobot-amf-train --policy.path=<a generalist whose amf_pretrain.json demo root is ../../elsewhere> "
         "--amf.strategy=amf", _pretraining_demos_outside_train),
    Case("pretraining_demos_outside_plan", "read outside", "lerobot-amf-plan --policy.path=<that generalist>",
         _pretraining_demos_outside_plan),
    Case("fifo_state_file", "read outside", "a checkpoint whose normaliser state file is a FIFO (nothing writes to it)",
         _fifo_state_file),
    Case("linked_parquet_in_dataset", "read outside",
         "--amf.source_root=<a LIBERO-shaped copy with an extra data/ parquet file linking outside it>",
         _linked_parquet),
    Case("tokenizer_at_an_absolute_path", "read outside",
         "a tokenizer_processor step whose tokenizer_name is the absolute path of a (plain) tokenizer outside",
         _tokenizer_at_an_absolute_path),
    # --- made-up results
    Case("forged_pretrained_evaluation", "made-up result",
         "lerobot-amf-train --policy.path=<a copy of the generalist carrying a forged evaluation of itself "
         f"({FORGED:,} of 1,000,000 episodes) where the old code kept it, and as amf_eval_report.json / "
         "eval_info.json>: the forged number must not reach the run's records, nothing may be written in the folder",
         _forged_evaluation),
    # --- non-finite numbers
    Case("nan_normaliser_state", "non-finite numbers",
         "lerobot-amf-eval of a checkpoint whose normaliser means are NaN", _nan_normaliser_state),
    Case("nan_source_stats", "non-finite numbers",
         "--amf.normalization=source on a LIBERO-shaped copy whose meta/stats.json action mean is NaN",
         _nan_source_stats),
    Case("nan_actions_in_dataset", "non-finite numbers",
         "--amf.source_root=<a LIBERO-shaped copy whose parquet rows hold NaN actions>", _nan_actions),
    # --- resume trusts the ledger
    Case("resume_retagged_demo", "resume record",
         "--resume=true on a run whose ledger re-tags a demo with a task outside the pool (window-open-v3)",
         _tampered_ledger(_retag)),
    Case("resume_duplicated_demo", "resume record", "--resume=true on a ledger listing one demo twice",
         _tampered_ledger(_duplicate)),
    Case("resume_extra_demo", "resume record", "--resume=true on a ledger with a demo record the dataset does not hold",
         _tampered_ledger(_extra)),
    Case("resume_changed_frame_count", "resume record",
         "--resume=true on a ledger whose demo record says 10 more frames",
         _tampered_ledger(_frame_count)),
    # --- malformed files
    Case("truncated_config_json", "malformed file", "lerobot-amf-eval of a checkpoint whose config.json is cut in half",
         _edited_checkpoint(lambda ckpt: truncate(ckpt / "config.json"))),
    Case("unknown_policy_type", "malformed file", 'a checkpoint whose config.json says "type": "evil"',
         _edited_checkpoint(_config_value("type", "evil"))),
    Case("malformed_routing_json", "malformed file", "a routed_model/ whose routing.json is cut in half",
         _edited_checkpoint(lambda ckpt: truncate(ckpt / "routing.json"), Scratch.routed_model)),
    Case("truncated_model_weights", "malformed file", "a checkpoint whose model.safetensors is cut in half",
         _edited_checkpoint(lambda ckpt: truncate(ckpt / "model.safetensors"))),
    Case("unknown_step_keyword", "malformed file",
         "a normalizer_processor step whose config has an unknown keyword (evil_keyword)",
         _edited_checkpoint(_unknown_step_keyword)),
    Case("deeply_nested_partition_file", "malformed file", "--amf.partitions=<a file of 100,000 '['>",
         _nested_partition_file),
    Case("deeply_nested_recipe", "malformed file", "--config_path=<a recipe of 100,000 '['>", _nested_recipe),
    bad_flags("huge_seed", "--seed=99999999999", timeout=TRAIN_TIMEOUT_S),
    Case("negative_episode_index", "malformed file",
         "--amf.source_root=<a LIBERO-shaped copy whose meta/episodes gives an episode the index -1>",
         _episode_index(-1)),
    Case("episode_index_out_of_range", "malformed file",
         "--amf.source_root=<a LIBERO-shaped copy whose meta/episodes gives an episode the index 10000 (of 6)>",
         _episode_index(10_000)),
    Case("plan_on_a_dataset_claiming_more_episodes", "malformed file",
         "lerobot-amf-plan --dataset.root=<the tiny run's demos, info.json total_episodes 1000 (it holds 4)>",
         _plan_on_inflated_dataset),
    Case("absurd_horizon", "malformed file", "a checkpoint whose config.json horizon is 10^9",
         _edited_checkpoint(_config_value("horizon", 10**9))),
    Case("absurd_inference_steps", "malformed file", "a checkpoint whose config.json num_inference_steps is 10^9",
         _edited_checkpoint(_config_value("num_inference_steps", 10**9))),
    Case("absurd_lora_rank", "malformed file", "a routed_model/ whose adapters' adapter_config.json r is 10^9",
         _edited_checkpoint(_adapter_rank, Scratch.routed_model)),
    Case("absurd_lora_rank_in_routing_json", "malformed file", "a routed_model/ whose routing.json lora.r is 10^9",
         _edited_checkpoint(_routing_rank, Scratch.routed_model)),
    # --- one rule for every CLI
    Case("eval_into_a_home_folder", "one rule per CLI",
         "lerobot-amf-eval --output_dir=<an existing non-empty folder that is no run (a stand-in for / or ~)>",
         _eval_into_home),
    Case("plan_into_a_home_folder", "one rule per CLI", "lerobot-amf-plan --output_dir=<that folder>", _plan_into_home),
    Case("huge_partition_file", "one rule per CLI", "--amf.partitions=<a 100 MB (sparse) file>", _huge_partition_file),
    Case("huge_recipe", "one rule per CLI", "--config_path=<a 100 MB recipe: a 100 MB job_name>", _huge_recipe),
]


# ---------------------------------------------------------------- which files a command read
STRACE = shutil.which("strace") or ("/usr/bin/strace" if Path("/usr/bin/strace").exists() else None)
TRACER = "strace" if STRACE else "audit hook"


@dataclass(frozen=True)
class Read:
    """One successful open for reading (or listing): the path asked for (absolute, links not
    resolved) and the file it reached (links resolved; the asked path where the tracer cannot tell)."""

    asked: str
    reached: str


def traced(command: list[str], folder: Path) -> tuple[list[str], dict]:
    """(``command`` wrapped by the tracer, the environment entries it needs); the record goes to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if STRACE:
        return [STRACE, "-f", "--seccomp-bpf", "-qq", "-y", "-e", "trace=open,openat,openat2", "-o", str(folder / "strace.txt"),
                *command], {}
    hook = folder / "audit_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK.replace("LOG_PATH", repr(str(folder / "audit.jsonl"))))
    return command, {"PYTHONPATH": str(hook)}


def reads(folder: Path) -> list[Read]:
    """The reads the tracer recorded in ``folder`` (empty when nothing was recorded)."""
    if (folder / "strace.txt").exists():
        return strace_reads(folder / "strace.txt")
    if (folder / "audit.jsonl").exists():
        return audit_reads(folder / "audit.jsonl")
    return []


def read_under(done: list[Read], decoys: list[Path], links: list[Path]) -> list[str]:
    """The decoy paths read: an open that reached a path under a decoy (links resolved), asked for
    one, or asked for one of the case's ``links`` (a symlink inside the input that points out)."""
    roots = {os.path.abspath(p) for p in decoys} | {os.path.realpath(p) for p in decoys}
    link_paths = {os.path.abspath(p) for p in links}
    hits = set()
    for read in done:
        under = [p for p in (read.reached, read.asked)
                 if any(p == root or p.startswith(root.rstrip("/") + "/") for root in roots)]
        if under or read.asked in link_paths:
            hits.add(under[0] if under else read.asked)
    return sorted(hits)


_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<call>open|openat|openat2)\((?P<rest>.*)$")
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>open|openat|openat2) resumed>(?P<rest>.*)$")
_UNFINISHED = " <unfinished ...>"
_ARGS = re.compile(r'^(?:(?:AT_FDCWD|-?\d+)(?:<(?P<dir>(?:[^>\\]|\\.)*)>)?,\s*)?"(?P<path>(?:[^"\\]|\\.)*)"(?:\.\.\.)?,'
                   r"\s*(?P<flags>.*)\)\s+=\s+(?P<ret>-?\d+)(?:<(?P<reached>(?:[^>\\]|\\.)*)>)?")


def _unescape(text: str) -> str:
    return codecs.escape_decode(text.encode("utf-8", "surrogateescape"))[0].decode("utf-8", "surrogateescape")


def _strace_calls(path: Path):
    """strace's complete call lines: an ``<unfinished ...>`` call joined with its ``resumed`` rest."""
    pending: dict[str, str] = {}
    with open(path, errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            resumed = _RESUMED.match(line)
            if resumed:
                head = pending.pop(resumed["pid"], None)
                if head is not None:
                    yield head + resumed["rest"]
                continue
            call = _CALL.match(line)
            if call and line.endswith(_UNFINISHED):
                pending[call["pid"]] = line[: -len(_UNFINISHED)]
            elif call:
                yield line


def strace_reads(path: Path) -> list[Read]:
    done = []
    for line in _strace_calls(path):
        args = _ARGS.match(_CALL.match(line)["rest"])
        if args is None or int(args["ret"]) < 0:
            continue
        if "O_WRONLY" in args["flags"] or "O_PATH" in args["flags"]:  # a write (watched), or a handle, not a read
            continue
        asked = _unescape(args["path"])
        if not os.path.isabs(asked) and args["dir"] is not None:
            asked = os.path.join(_unescape(args["dir"]), asked)
        asked = os.path.normpath(asked)
        done.append(Read(asked, _unescape(args["reached"]) if args["reached"] else asked))
    return done


AUDIT_HOOK = '''"""Written by benchmarks/hostile_inputs.py: records the files this Python process opens or lists."""
import json as _json
import os as _os
import sys as _sys

_fd = _os.open(LOG_PATH, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
_busy = []


def _record(event, args):
    if _busy or event not in ("open", "os.listdir", "os.scandir"):
        return
    _busy.append(1)
    try:
        path = args[0] if args else None
        if isinstance(path, bytes):
            path = _os.fsdecode(path)
        if isinstance(path, (str, _os.PathLike)) and _os.path.exists(path):
            mode = args[1] if event == "open" and len(args) > 1 else None
            flags = args[2] if event == "open" and len(args) > 2 else 0
            writes = (isinstance(mode, str) and any(c in mode for c in "wax") and "+" not in mode) or \\
                (mode is None and isinstance(flags, int) and flags & _os.O_ACCMODE == _os.O_WRONLY)
            if not writes:
                line = _json.dumps([_os.path.abspath(path), _os.path.realpath(path)]) + "\\n"
                _os.write(_fd, line.encode("utf-8", "surrogateescape"))
    except Exception:
        pass
    finally:
        _busy.pop()


_sys.addaudithook(_record)
'''


def audit_reads(path: Path) -> list[Read]:
    done = []
    for line in path.read_text(errors="surrogateescape").splitlines():
        try:
            asked, reached = json.loads(line)
        except ValueError:  # a line torn by a killed process
            continue
        done.append(Read(os.path.normpath(asked), reached))
    return done


# ---------------------------------------------------------------- running one case
def digest(path: Path):
    """sha256 of every file under ``path`` (None: it does not exist). Links are named by their
    target and special files by their kind, never opened."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink():
        return "-> " + os.readlink(path)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" if p.is_dir() else "special")
    return out


def what_changed(path: Path, before, after) -> list[str]:
    """``path``, or the entries under it that appeared, went or changed (the first 5, then a count)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [str(path)]
    entries = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    more = [f"(+{len(entries) - 5} more)"] if len(entries) > 5 else []
    return [str(path / k) for k in entries[:5]] + more


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stderr_lines(stderr: str) -> list[str]:
    """stderr's non-empty lines, progress-bar redraws split apart and terminal escapes dropped."""
    return [ln.strip() for ln in _ESCAPES.sub("", stderr).splitlines() if ln.strip()]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr_lines(stderr) if "error:" in ln]


def imported_modules(cache: Path) -> list[str]:
    """Python files transformers copied into its dynamic-module cache (``HF_MODULES_CACHE``) to import."""
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.py") if p.name != "__init__.py") \
        if cache.is_dir() else []


def limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_command(command: list[str], cwd: Path, env: dict, timeout: int) -> tuple[int, str, bool]:
    """(exit code, stderr, hung): the command in a process group of its own with stdin closed;
    past ``timeout`` the whole group is killed."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
                            preexec_fn=limit_memory)
    try:
        _, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stderr, False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        return proc.returncode, stderr, True


def run_case(case: Case, scratch: Scratch) -> dict:
    folder = scratch.root / "cases" / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    scratch.marker.unlink(missing_ok=True)
    attempt = case.prepare(scratch, folder)
    watched = [*attempt.watched, *(d for d in attempt.decoys if d not in attempt.watched)]
    before = {str(p): digest(p) for p in watched}
    modules = folder / "hf_modules"  # transformers' dynamic-module cache: the case's own
    command, tracer_env = traced(attempt.command, folder / "trace")
    env = {**cli_env(scratch.home), "HF_MODULES_CACHE": str(modules), **attempt.env}
    # the CLIs of this checkout, from any working directory (the tracer's hook first, if it has one)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tracer_env.get("PYTHONPATH"), str(ROOT)) if p)
    started = time.time()
    with attempt.hold() if attempt.hold else contextlib.nullcontext():
        code, stderr, hung = run_command(command, attempt.cwd or ROOT, env, attempt.timeout)
    seconds = round(time.time() - started, 1)
    (folder / "stderr.txt").write_text(stderr)
    errors, tail = error_lines(stderr), stderr_lines(stderr)
    after = {str(p): digest(p) for p in watched}
    changed = [p for p in watched if after[str(p)] != before[str(p)]]
    read = read_under(reads(folder / "trace"), attempt.decoys, attempt.links)
    imported = imported_modules(modules)
    traceback = "Traceback" in stderr or (not hung and code not in (0, 2))
    line = errors[-1] if errors else (tail[-1] if tail else "")
    judged = attempt.judge() if attempt.judge else {}
    result = {
        "name": case.name, "kind": case.kind, "what": case.what,
        "command": shown(attempt.command, scratch.root),
        "exit_code": code,
        "line": shown_text((f"(killed after {attempt.timeout} s) " if hung else "") + line, scratch.root),
        # a case whose right outcome is to go on without the hostile part (a forged evaluation file
        # is simply never read) counts as handled cleanly when it did, with nothing else fired
        "refused_cleanly": (code == 2 and len(errors) == 1 and "Traceback" not in stderr and not changed) or
                           (judged.get("ignored_cleanly", False) and code == 0 and not changed
                            and "Traceback" not in stderr),
        "executed": scratch.marker.exists() or bool(imported),
        "read_outside": bool(read),
        "wrote_outside": bool(changed),
        "accepted_silently": judged.pop("accepted_silently", code == 0),
        "traceback": traceback,
        "hung": hung,
        "changed": [shown_text(entry, scratch.root) for p in changed
                    for entry in what_changed(p, before[str(p)], after[str(p)])],
        "read": [shown_text(p, scratch.root) for p in read[:20]],
        "imported": imported,
        "details": judged,
        "timeout_s": attempt.timeout,
        "seconds": seconds,
    }
    scratch.marker.unlink(missing_ok=True)
    return result


ENTRY_POINTS = {"lerobot_amf.train": "lerobot-amf-train", "lerobot_amf.eval_cli": "lerobot-amf-eval",
                "lerobot_amf.plan_cli": "lerobot-amf-plan"}


def shown_text(text: str, scratch: Path) -> str:
    """A line or path with this machine's folders named by role (results name no local path)."""
    for path, name in ((scratch, "<scratch>"), (Path(sys.prefix), "<venv>"), (ROOT, "<repo>")):
        text = text.replace(str(path), name)
    return text


def shown(command: list[str], scratch: Path) -> str:
    """The command as a user types it: the CLIs by their entry points, ``python`` for the rest."""
    words = command
    if words[:2] == [sys.executable, "-m"]:
        words = [*ENTRY_POINTS.get(words[2], f"python -m {words[2]}").split(), *words[3:]]
    return " ".join(shlex.quote(shown_text(w, scratch)) for w in words)


# ---------------------------------------------------------------- summaries
def clean(result: dict) -> bool:
    """The case met the goal: refused cleanly, and no bad column fired."""
    return result["refused_cleanly"] and not any(result.get(c) for c in COLUMNS[1:])


def column(result: dict, name: str):
    """A column of one case; None where the results file predates it (``written`` was ``wrote_outside``)."""
    if name == "wrote_outside" and name not in result:
        return result.get("written")
    return result.get(name)


def counts(results: list[dict]) -> dict:
    """How many cases each column fired for (None: a results file from before the column)."""
    out = {"tried": len(results)}
    for name in COLUMNS:
        values = [column(r, name) for r in results]
        out[name] = None if any(v is None for v in values) else sum(bool(v) for v in values)
    return out


def summarize(results: list[dict]) -> dict:
    kinds: dict[str, list[dict]] = {}
    for r in results:
        kinds.setdefault(r["kind"], []).append(r)
    return {**counts(results),
            "per_kind": {kind: counts(cases) for kind, cases in kinds.items()},
            "not_refused_cleanly": [r["name"] for r in results if not r["refused_cleanly"]],
            "fired": {name: [r["name"] for r in results if r[name]] for name in COLUMNS[1:]},
            "tracer": TRACER,
            "goal": GOAL, "goal_met": all(clean(r) for r in results)}


def fired(result: dict) -> str:
    """The bad columns of a case, or 'not refused cleanly' when none fired but it was not refused cleanly."""
    names = [c.replace("_", " ") for c in COLUMNS[1:] if result.get(c)]
    return ", ".join(names) or ("" if result["refused_cleanly"] else "not refused cleanly")


def show(results: dict) -> None:
    s = results["summary"]
    if "read_outside" not in s:  # a results file from before the columns
        print(markdown(results))
        return
    print(f"{s['tried']} tried: {s['refused_cleanly']} refused cleanly, {s['executed']} executed, "
          f"{s['read_outside']} read outside, {s['wrote_outside']} wrote outside, {s['accepted_silently']} accepted "
          f"silently, {s['traceback']} traceback(s), {s['hung']} hung (tracer: {s.get('tracer')})"
          + ("" if s["goal_met"] else f"; not clean: {[r['name'] for r in results['cases'] if not clean(r)]}"))
    for r in results["cases"]:
        flag = "ok " if clean(r) else "BAD"
        print(f"  {flag} {r['name']:<42} exit {r['exit_code']}  [{fired(r)}]  {r['line'][:150]}")


HEADER = ("| input | tried | refused cleanly (one line, exit 2) | executed | read outside | wrote outside | "
          "accepted silently | traceback | hung |")


def markdown(results: dict) -> str:
    """The docs' tables: per kind (the README's), then every case with its line."""
    kinds: dict[str, list[dict]] = {}
    for r in results["cases"]:
        kinds.setdefault(r["kind"], []).append(r)
    rows = [HEADER, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, cases in [*kinds.items(), ("total", results["cases"])]:
        n = counts(cases)
        cells = ["–" if n[c] is None else str(n[c]) for c in COLUMNS]
        rows.append(f"| {kind} | {n['tried']} | {' | '.join(cells)} |")
    rows += ["", "| case | what | exit | the line printed |", "| --- | --- | --- | --- |"]
    for r in results["cases"]:
        line, what = (text.replace("|", "\\|") for text in (r["line"], r["what"]))
        rows.append(f"| `{r['name']}` | {what} | {r['exit_code']} | {line} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile_inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated case names or kinds (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--scratch", type=Path, default=SCRATCH)
    parser.add_argument("--show", action="store_true", help="print the table of the results file")
    parser.add_argument("--markdown", action="store_true", help="print the docs' markdown tables of the results file")
    parser.add_argument("--dry-run", action="store_true")
    return parser


def chosen(only: str | None) -> list[Case]:
    """The cases ``--only`` names (case names or kinds), in the order of ``CASES``."""
    if not only:
        return CASES
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in {c.name for c in CASES} | set(KINDS)]
    if unknown:
        raise SystemExit(f"unknown case(s) or kind(s) {unknown}; kinds: {', '.join(KINDS)}; "
                         f"cases: {', '.join(c.name for c in CASES)}")
    return [c for c in CASES if c.name in wanted or c.kind in wanted]


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    cases = chosen(args.only)
    if args.show or args.markdown:
        results = json.loads(args.results.read_text())
        print(markdown(results)) if args.markdown else show(results)
        return
    if args.dry_run:
        dry_run("hostile_inputs", {"cases": [f"{c.name} ({c.kind}): {c.what}" for c in cases],
                                   "tried": len(cases), "tracer": TRACER, "results": args.results,
                                   "scratch": args.scratch})
        return
    scratch = Scratch(args.scratch)
    scratch.root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for i, case in enumerate(cases, 1):
            result = run_case(case, scratch)
            results.append(result)
            print(f"[hostile_inputs] {i}/{len(cases)} {'ok ' if clean(result) else 'BAD'} {case.name}: exit "
                  f"{result['exit_code']} ({result['seconds']} s) [{fired(result)}] {result['line'][:160]}", flush=True)
    finally:
        scratch.close()
    out = {"benchmark": "hostile_inputs", "measured_at_commit": measured_at_commit(),
           "complete": len(cases) == len(CASES), "summary": summarize(results), "cases": results}
    write_json(args.results, out)
    show(out)


if __name__ == "__main__":
    main()
