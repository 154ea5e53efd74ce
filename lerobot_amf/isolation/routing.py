"""One set of task-specific weights per partition, and a policy that routes to them.

``RoutedPolicy`` is a LeRobot ``PreTrainedPolicy`` (so LeRobot's ``eval_policy`` and our round
loop take it as is) around a pretrained policy whose base weights stay frozen, with either

* ``lora``: one peft LoRA adapter per partition, built with LeRobot's own
  ``PreTrainedPolicy.wrap_with_peft`` (``--peft.r``, ``--peft.target_modules``; by default the
  policy family's ``lora_targets``, or LeRobot's own where it has them), switched with peft's
  ``set_adapter``; or
* ``head``: one copy of the action-head module per partition (``HeadCopies``; by default the
  family's ``head_module``), for policies where LoRA does not fit.

Routing: ``select_action`` reads the observation's task strings (LeRobot's ``task`` key, the
language instruction or the task name), maps them to a partition and activates it. A batch
must route to one partition (LeRobot's evaluation runs one task per vector env). Task strings
are compared as ``routing_key`` makes them (whitespace trimmed and collapsed): a policy's own
pre-processor may have changed them before the router sees them (LeRobot 0.6.1's SmolVLA one, as
0.4.4's, appends ``"\n"`` to every task); any other difference is refused with one line.

Saved layout (``save`` / ``load_routed_policy``)::

    routed_model/
      routing.json                  # mode, partitions, instruction -> task, base checkpoint reference
      adapters/<partition>/adapter_model.safetensors + adapter_config.json   (lora; peft's layout)
      heads/<partition>.safetensors                                          (head)
      policy_preprocessor.json, policy_postprocessor.json, *.safetensors     (LeRobot processors)
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from safetensors.torch import load_file, save_file
from torch import nn

from lerobot_amf.embeddings.base import unwrap_policy
from lerobot_amf.errors import AMFInputError
from lerobot_amf.families import PolicyFamily, family_of
from lerobot_amf.isolation import ROUTED_MODES
from lerobot_amf.isolation.lora_targets import check_lora_targets
from lerobot_amf.isolation.partitions import Partitions
from lerobot_amf.trust import (LOCAL_PATH_PLACEHOLDER, UntrustedFileError, artifacts_inside, check_policy_type,
                               check_processor_files, check_safetensors, check_sizes, check_tree, local_checkpoint,
                               names_no_folder_outside, read_json)

ROUTED_DIR = "routed_model"  # a checkpoint's routed policy, beside LeRobot's pretrained_model/
ROUTING_FILENAME = "routing.json"
FORMAT = "lerobot_amf.routed/1"


def acting_policy(policy: nn.Module) -> nn.Module:
    """The LeRobot policy that does the work (under a routed policy or a peft wrapper)."""
    return policy.policy if isinstance(policy, RoutedPolicy) else unwrap_policy(policy)


def serving(policy: nn.Module, task: str):
    """Context: the policy as it acts for ``task`` (a routed policy: that task's partition active)."""
    if isinstance(policy, RoutedPolicy):
        return policy.serving(task)
    return contextlib.nullcontext(unwrap_policy(policy))


class HeadCopies(nn.Module):
    """Per-partition copies of one module; ``active`` says which runs (None: the frozen original)."""

    def __init__(self, module: nn.Module, names: list[str]):
        super().__init__()
        self.original = module.requires_grad_(False)
        self.copies = nn.ModuleDict({name: copy.deepcopy(module) for name in names})
        self.active: str | None = names[0]

    @property
    def running(self) -> nn.Module:
        """The module that runs now (what the embedder differentiates in this one's place)."""
        return self.original if self.active is None else self.copies[self.active]

    def forward(self, *args, **kwargs):
        return self.running(*args, **kwargs)


def routing_key(task: str) -> str:
    """A task string as routing compares it: leading / trailing whitespace dropped, inner runs of
    whitespace one space. LeRobot 0.6.1's SmolVLA pre-processor (its
    ``smolvla_new_line_processor`` step, ``processor/newline_task_processor.py``) appends ``"\n"`` to the task before the policy, and so the router, sees it."""
    return " ".join(str(task).split())


class RoutedPolicy(PreTrainedPolicy):
    """A frozen pretrained policy + per-partition adapters (or head copies), routed by task."""

    config_class = PreTrainedConfig
    name = "amf_routed"

    def __init__(self, policy: PreTrainedPolicy, partitions: Partitions, mode: str,
                 task_of_instruction: dict[str, str], peft_overrides: dict | None = None,
                 head_module: str | None = None):
        super().__init__(policy.config)
        if mode not in ROUTED_MODES:
            raise AMFInputError(f"Unknown isolation mode {mode!r} for routing. Allowed: {', '.join(ROUTED_MODES)}.")
        self.partitions, self.mode = partitions, mode
        self.task_of_instruction = dict(task_of_instruction)
        self._task_of_key = {routing_key(k): v for k, v in self.task_of_instruction.items()}
        self._check_routable()
        self.base_ref = {"pretrained_path": str(policy.config.pretrained_path), "type": policy.config.type}
        names = partitions.names
        if mode == "lora":
            self.lora_settings = lora_settings(policy, peft_overrides)
            self.model = policy.wrap_with_peft(peft_cli_overrides={**self.lora_settings})
            for name in names:
                self.model.add_adapter(name, copy.deepcopy(self.model.peft_config["default"]))
            self.model.set_adapter(names[0])
            self.model.delete_adapter("default")
        else:
            self.head_module = head_module or _family_default(policy, "head_module", "--amf.head_module")
            for p in policy.parameters():
                p.requires_grad_(False)
            parent_name, _, attr = self.head_module.rpartition(".")
            parent = policy.get_submodule(parent_name) if parent_name else policy
            setattr(parent, attr, HeadCopies(getattr(parent, attr), names))
            self.model = policy
        self.activate(names[0])

    # ------------------------------------------------------------------ what runs
    @property
    def policy(self) -> PreTrainedPolicy:
        """The LeRobot policy doing the work (adapters injected / heads swapped in place)."""
        return self.model.get_base_model() if self.mode == "lora" else self.model

    @property
    def active(self) -> str:
        return self._active

    def activate(self, partition: str) -> None:
        """Run (and train) ``partition``'s weights; only they require grad."""
        if partition not in self.partitions.groups:
            raise KeyError(f"No partition {partition!r}; partitions: {', '.join(self.partitions.names)}.")
        if self.mode == "lora":
            self.model.set_adapter(partition)
        else:
            heads = self._heads()
            heads.active = partition
            for name, module in heads.copies.items():
                module.requires_grad_(name == partition)
        self._active = partition

    @contextlib.contextmanager
    def serving(self, task: str):
        """The policy as it acts for ``task`` (a pool task or its instruction): that task's
        partition active inside the block, the previously active one restored after."""
        previous = self._active
        self.activate(self.partitions.of(self.task_of(task)))
        try:
            yield self.policy
        finally:
            self.activate(previous)

    def partition_parameters(self, partition: str) -> dict[str, torch.Tensor]:
        """The tensors that belong to ``partition`` alone (its adapter or head copy), by name."""
        if self.mode == "lora":
            from peft import get_peft_model_state_dict

            return get_peft_model_state_dict(self.model, adapter_name=partition)
        return {k: v for k, v in self._heads().copies[partition].state_dict().items()}

    def set_all_trainable(self) -> None:
        """Every partition's weights require grad (so DDP registers them all before a partition is chosen)."""
        for name in self.partitions.names:
            for tensor in self._partition_modules(name):
                tensor.requires_grad_(True)

    def _partition_modules(self, partition: str):
        if self.mode == "head":
            return list(self._heads().copies[partition].parameters())
        return [p for n, p in self.model.named_parameters() if f".{partition}." in n and "lora_" in n]

    def _heads(self) -> HeadCopies:
        return self.policy.get_submodule(self.head_module)

    # ------------------------------------------------------------------ routing
    def _check_routable(self) -> None:
        """Every instruction must name a pool task (``Partitions.of`` raises otherwise)."""
        for task in self.task_of_instruction.values():
            self.partitions.of(task)

    def task_of(self, task: str) -> str:
        """The pool task a task string names (an instruction or the task name), after ``routing_key``."""
        key = routing_key(task)
        return self._task_of_key.get(key, key)

    def route(self, batch: dict) -> str:
        """The partition of the batch's task(s); all observations must share one."""
        tasks = batch.get("task")
        if tasks is None or (not isinstance(tasks, str) and len(tasks) == 0):
            raise ValueError("Cannot route: the observation has no 'task' (LeRobot adds it from the env's task_description).")
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        found = set()
        for t in tasks:
            task = self.task_of(t)
            try:
                found.add(self.partitions.of(task))
            except AMFInputError:
                raise ValueError(f"Cannot route task {t!r}: not a pool task or instruction "
                                 f"({self.partitions.describe()}).") from None
        if len(found) != 1:
            raise ValueError(f"One batch routes to several partitions {sorted(found)}; evaluate one task per vector env.")
        return found.pop()

    # ------------------------------------------------------------------ PreTrainedPolicy API
    def get_optim_params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def reset(self):
        self.policy.reset()

    def forward(self, batch, *args, **kwargs):
        """Training loss with the active partition's weights (the caller activates it)."""
        return self.policy.forward(batch, *args, **kwargs)

    def _activate_route(self, batch) -> None:
        partition = self.route(batch)
        if partition != self._active:
            self.activate(partition)

    @torch.no_grad()
    def select_action(self, batch, **kwargs):
        self._activate_route(batch)
        return self.policy.select_action(batch, **kwargs)

    @torch.no_grad()
    def predict_action_chunk(self, batch, **kwargs):
        self._activate_route(batch)
        return self.policy.predict_action_chunk(batch, **kwargs)

    # ------------------------------------------------------------------ save / load
    def save(self, directory: Path, preprocessor=None, postprocessor=None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        record = {"format": FORMAT, "mode": self.mode, "partitions": self.partitions.to_json(),
                  "task_of_instruction": self.task_of_instruction, "base": self.base_ref}
        if self.mode == "lora":
            record["lora"] = self.lora_settings
            self.model.save_pretrained(str(directory / "adapters"))
        else:
            record["head_module"] = self.head_module
            (directory / "heads").mkdir(exist_ok=True)
            for name in self.partitions.names:
                save_file({k: v.contiguous() for k, v in self.partition_parameters(name).items()},
                          str(directory / "heads" / f"{name}.safetensors"))
        for processor in (preprocessor, postprocessor):
            if processor is not None:
                processor.save_pretrained(directory)
        (directory / ROUTING_FILENAME).write_text(json.dumps(record, indent=2))
        return directory

    def load_partition_weights(self, directory: Path) -> None:
        directory = Path(directory)
        for name in self.partitions.names:
            if self.mode == "lora":
                from peft import set_peft_model_state_dict

                weights = load_file(str(directory / "adapters" / name / "adapter_model.safetensors"))
                result = set_peft_model_state_dict(self.model, weights, adapter_name=name)
                if getattr(result, "unexpected_keys", None):
                    raise ValueError(f"Adapter {name} in {directory} does not fit this policy: {result.unexpected_keys[:3]}")
            else:
                self._heads().copies[name].load_state_dict(load_file(str(directory / "heads" / f"{name}.safetensors")))
        self.activate(self._active)


def lora_settings(policy: PreTrainedPolicy, overrides: dict | None) -> dict:
    """LeRobot ``--peft.*`` overrides, with our target modules where LeRobot has no default."""
    settings = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings.setdefault("method_type", "LORA")
    if str(settings["method_type"]).upper() != "LORA":
        raise AMFInputError(f"amf.isolation=lora uses LoRA adapters; got --peft.method_type={settings['method_type']}.")
    if not settings.get("target_modules") and policy._get_default_peft_targets() is None:
        settings["target_modules"] = _family_default(policy, "lora_targets", "--peft.target_modules")
    if isinstance(settings.get("target_modules"), tuple):
        settings["target_modules"] = list(settings["target_modules"])
    if settings.get("target_modules"):  # peft would adapt what matches and say nothing about the rest
        check_lora_targets(policy, settings["target_modules"])
    return settings


def _family_default(policy: PreTrainedPolicy, attribute: str, flag: str):
    """The policy family's ``lora_targets`` / ``head_module``, or a one-line error naming ``flag``."""
    try:
        family: PolicyFamily = family_of(policy)
    except ValueError as err:
        raise AMFInputError(f"No default {attribute} for policy type {policy.config.type!r} ({err}); pass {flag}.") from None
    value = getattr(family, attribute)
    if value is None:
        raise AMFInputError(f"No default {attribute} for policy type {policy.config.type!r}; pass {flag}.")
    return value


def read_routing_record(directory: Path) -> dict:
    """``routing.json`` of a routed model folder (possibly someone else's), with the whole folder
    checked first (``trust.check_tree``: regular files, links inside it) and every part a loader
    uses checked before it is used: format, mode, partition names (they become paths), a known
    policy type, and sizes (a LoRA rank) bounded."""
    directory = Path(directory)
    what = f"{directory.name}/{ROUTING_FILENAME}"
    check_tree(directory, f"Routed model {directory.name}/")
    record = read_json(directory / ROUTING_FILENAME, what)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UntrustedFileError(f"{what}: not a {FORMAT} record: refused.")
    if record.get("mode") not in ROUTED_MODES:
        raise UntrustedFileError(f"{what}: mode {record.get('mode')!r} is not one of {', '.join(ROUTED_MODES)}: refused.")
    Partitions.from_json(record.get("partitions"))  # its names become paths: checked before any load
    base = record.get("base")
    if not isinstance(base, dict) or not isinstance(base.get("pretrained_path"), str):
        raise UntrustedFileError(f"{what}: 'base' must name its checkpoint and policy type: refused.")
    check_policy_type(base.get("type"), f"{what}: 'base'")
    if not isinstance(record.get("task_of_instruction", {}), dict):
        raise UntrustedFileError(f"{what}: 'task_of_instruction' is not a JSON object: refused.")
    check_sizes({k: v for k, v in record.items() if k != "partitions"}, what)
    if "head_module" in record and not isinstance(record["head_module"], str):
        raise UntrustedFileError(f"{what}: 'head_module' is not a module name: refused.")
    for adapter in sorted(directory.glob("adapters/*/adapter_config.json")):  # peft's: bounded like ours
        check_sizes(read_json(adapter, f"Routed model {directory.name}/"), f"{directory.name}/{adapter.relative_to(directory)}")
    for weights in sorted(directory.rglob("*.safetensors")):  # adapters, heads, processor state
        check_safetensors(weights, f"Routed model {directory.name}/")
    return record


def recorded_base(record: dict, base_path: str | None, directory: Path) -> str:
    """The base checkpoint to load under a routing record: ``base_path`` if given (the user's own
    choice), else the one it names if that is a Hub repo id or a folder inside ``directory``. A
    routing map is a file from others: a local folder elsewhere (absolute, or relative to where the
    command runs) is not read on its word, and a placeholder (the base was local to the machine that
    pushed it) cannot be."""
    if base_path:
        return str(base_path)
    base = str(record["base"]["pretrained_path"])
    if base.startswith(LOCAL_PATH_PLACEHOLDER):
        raise AMFInputError(f"{Path(directory).name}/{ROUTING_FILENAME} names its base checkpoint as {base!r}: it "
                            "was local to the machine that trained it; pass the base (base_path=, or "
                            "--amf.base_path= to lerobot-amf-eval).")
    if not names_no_folder_outside(base, Path(directory)):
        raise UntrustedFileError(f"{Path(directory).name}/{ROUTING_FILENAME} names its base checkpoint as the local "
                                 f"folder {base!r}, outside {Path(directory).name}/: not read on a routing map's word. "
                                 "If that base is yours, pass it: base_path= (or --amf.base_path= to lerobot-amf-eval).")
    return base


@dataclass
class RoutedModelFiles:
    """A routed model folder whose files and base checkpoint passed every check (``open_routed_model``)."""

    directory: Path
    record: dict  # its routing.json
    base: str  # the checked base checkpoint's local folder (a Hub base: its snapshot)


def open_routed_model(directory: str | Path, base_path: str | None = None,
                      user_values: dict | None = None) -> RoutedModelFiles:
    """Check a routed model folder (possibly someone else's) and its base before anything is loaded:
    ``read_routing_record``, ``recorded_base``, ``trust.local_checkpoint`` on the base, and the
    processor files (their tokenizer may lie in the base). ``user_values``: ``--policy.*`` values the
    user gave (``trust.check_checkpoint``)."""
    directory = Path(directory)
    record = read_routing_record(directory)
    base = str(local_checkpoint(recorded_base(record, base_path, directory),
                                f"The base checkpoint of {directory.name}/", user_values))
    with artifacts_inside(Path(base)):  # its processors are its base's: their tokenizer may lie there
        check_processor_files(directory)  # before anything is loaded (the steps again as they load)
    return RoutedModelFiles(directory, record, base)


def load_routed_policy(directory: str | Path, device: str = "cpu", base_path: str | None = None):
    """One call from a saved ``routed_model/`` to (policy, preprocessor, postprocessor).

    The processors are None when none were saved with it (a run always saves them). The folder and
    the base are checked before anything is loaded (``open_routed_model``): a routed model may come
    from someone else.

    ``base_path`` replaces the recorded base checkpoint (e.g. after moving it, on another machine,
    or a local base outside the folder: the routing map alone does not make it read).
    """
    return load_opened_routed_policy(open_routed_model(directory, base_path), device)


def load_opened_routed_policy(opened: RoutedModelFiles, device: str = "cpu"):
    """``load_routed_policy`` of a folder ``open_routed_model`` has checked."""
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    directory, record, base = opened.directory, opened.record, opened.base
    partitions = Partitions.from_json(record["partitions"])
    policy_cls = get_policy_class(record["base"]["type"])
    policy = policy_cls.from_pretrained(base)
    policy.config.pretrained_path = base
    policy.config.device = device
    policy.to(device)
    routed = RoutedPolicy(policy, partitions, record["mode"],
                          record["task_of_instruction"], peft_overrides=record.get("lora"),
                          head_module=record.get("head_module"))
    routed.load_partition_weights(directory)
    routed.to(device)
    routed.eval()
    if not (directory / "policy_preprocessor.json").exists():
        return routed, None, None
    with artifacts_inside(Path(base)):  # its processors are its base's: their tokenizer may lie there
        preprocessor, postprocessor = make_pre_post_processors(
            policy.config, pretrained_path=str(directory),
            preprocessor_overrides={"device_processor": {"device": device}})
    return routed, preprocessor, postprocessor
