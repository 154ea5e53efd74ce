"""Single-model export: one plain LeRobot policy from per-partition weights.

* ``merge``   — task arithmetic: base + Σ_p Δ_p over the trained partitions, where Δ_p is a LoRA
  adapter's delta weight (peft's ``get_delta_weight``) or a head copy minus the pretrained head.
  Cheap and exact for one partition; with several, deltas interfere (the report shows how much).
* ``distill`` — the merged model fine-tuned (all weights) to imitate the routed policy: batches
  of one partition's frames (collected demos, plus pretraining demos when known) are relabelled
  with the routed teacher's own action chunks and trained on with the student's LeRobot loss.

The result is a plain policy of the base type: ``save_pretrained``/``lerobot-eval``/push as usual.
"""

from __future__ import annotations

import copy
import time

import torch
from tqdm import tqdm

from lerobot_amf.families import family_of
from lerobot_amf.isolation.routing import HeadCopies, RoutedPolicy
from lerobot_amf.training import loss_summary



@torch.no_grad()
def merge(routed: RoutedPolicy, partitions: list[str]):
    """A plain policy with base + the sum of ``partitions``' deltas."""
    policy = routed.policy
    if routed.mode == "lora":
        from peft.tuners.lora import LoraLayer

        merged_state = {}
        for name, module in policy.named_modules():
            if isinstance(module, LoraLayer):
                weight = module.get_base_layer().weight.detach().clone()
                for p in partitions:
                    weight += module.get_delta_weight(p)
                merged_state[f"{name}.weight"] = weight
        state = {}
        for key, value in policy.state_dict().items():
            if "lora_" in key:
                continue
            plain = key.replace(".base_layer.", ".")
            state[plain] = merged_state.get(plain, value)
    else:
        heads: HeadCopies = routed._heads()
        pretrained = heads.original.state_dict()
        merged_head = {k: v.clone() for k, v in pretrained.items()}
        for p in partitions:
            for k, v in heads.copies[p].state_dict().items():
                merged_head[k] += v - pretrained[k]
        prefix = routed.head_module + "."
        state = {k: v for k, v in policy.state_dict().items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in merged_head.items()})
    config = copy.deepcopy(policy.config)
    # LeRobot's wrap_with_peft marks the shared config use_peft=True; the export holds whole
    # weights, and a config saying PEFT makes LeRobot look for adapter files when it loads it.
    config.use_peft = False
    plain = type(policy)(config)
    plain.load_state_dict(state, strict=True)
    return plain.to(next(policy.parameters()).device)


def teacher_of(policy):
    """The distillation teacher of ``policy``'s family: (policy, batch) -> its own action chunk."""
    family = family_of(policy)
    if family.teacher_action_chunk is None:
        raise NotImplementedError(f"Distillation teachers are not built for policy type {family.name!r} "
                                  "(they are for diffusion and act); use --amf.export=merge.")
    return family.teacher_action_chunk


def distill(routed: RoutedPolicy, student, partition_loaders: dict, steps: int, optimizer_cfg, seed: int = 0,
            desc: str = "Distilling partitions into one model") -> dict:
    """Train ``student`` to imitate ``routed`` on batches of each partition in turn.

    partition_loaders: partition -> an endless iterator of preprocessed batches of its frames;
    partitions are visited in proportion to their frame counts (``weights`` of the loaders).
    """
    names = list(partition_loaders)
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([float(partition_loaders[n]["frames"]) for n in names])
    optimizer = optimizer_cfg.build([p for p in student.parameters() if p.requires_grad])
    student.train()
    routed.eval()
    losses = []
    teacher = teacher_of(routed.policy)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc=desc, unit="step", leave=False):
        name = names[int(torch.multinomial(weights, 1, generator=generator))]
        batch = next(partition_loaders[name]["batches"])
        routed.activate(name)
        with torch.no_grad():
            target = teacher(routed.policy, batch)
        batch = {**batch, "action": target}
        if "action_is_pad" in batch:
            batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
        loss, _ = student.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    student.eval()
    return {"steps": steps, **loss_summary(losses),
            "seconds": round(time.perf_counter() - start, 2), "partitions": names}
