"""A checkpoint folder from others, checked whole before any loader reads it.

``check_checkpoint`` runs before LeRobot (or peft, or safetensors) opens anything in the folder:
its tree (regular files only; links stay inside), ``config.json`` (bounded JSON, a known policy
type, sizes a loader would allocate or loop over bounded, no field naming a model folder
elsewhere), its processor files (``processors.check_processor_files``) and every ``.safetensors``
header (``check_safetensors``: a truncated or forged header is one line, not a Rust panic or a
multi-GB allocation). ``local_checkpoint`` turns a ``--policy.path`` that is a Hub repo id into
the snapshot folder of exactly the files a checkpoint loads, checked the same way.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from lerobot_amf.errors import AMFInputError
from lerobot_amf.trust.files import UntrustedFileError, check_entry, check_tree, names_no_folder_outside, read_json
from lerobot_amf.trust.processors import MAX_FEATURE_VALUES, check_processor_files, never_prompt_for_remote_code

# Sizes a loader allocates or loops over, by config key: 5-10x above LeRobot 0.6.1's defaults and the
# published act / diffusion / smolvla / pi0 / pi05 checkpoints (act chunk 100, diffusion horizon 16-64,
# smolvla 48 tokens and 512 px, pi05 200 tokens, 10-100 denoising steps, LoRA ranks <= 64), far below
# what exhausts a machine. A list counts each item against its key's bound.
SIZE_BOUNDS = {
    "chunk_size": 1024, "horizon": 1024, "n_action_steps": 1024, "n_obs_steps": 16, "dim_model": 4096,
    "dim_feedforward": 16384, "n_heads": 64, "n_encoder_layers": 32, "n_decoder_layers": 32,
    "n_vae_encoder_layers": 32, "latent_dim": 1024, "down_dims": 4096, "kernel_size": 15, "n_groups": 64,
    "diffusion_step_embed_dim": 1024, "spatial_softmax_num_keypoints": 512, "resize_shape": 1024, "crop_shape": 1024,
    "num_train_timesteps": 1000, "num_inference_steps": 1000, "num_steps": 1000, "max_state_dim": 1024,
    "max_action_dim": 1024, "tokenizer_max_length": 1024, "image_resolution": 896, "resize_imgs_with_padding": 2048,
    "empty_cameras": 8, "prefix_length": 4096, "num_vlm_layers": 64, "num_expert_layers": 64,
    "self_attn_every_n_layers": 64, "execution_horizon": 1024, "debug_maxlen": 10_000, "r": 1024,
    "lora_alpha": 65_536,
}
MAX_LIST = 4096
# The policy types a checkpoint may be (the families lerobot-amf serves; a test holds the two lists
# equal). Not every type LeRobot knows: pi0_fast, groot, wall_x and gaussian_actor load a repo their
# config names with trust_remote_code=True while the policy is built.
LOADABLE_POLICY_TYPES = ("act", "diffusion", "smolvla", "pi0", "pi05")
MAX_INT = 2**31 - 1  # any other integer in a config (int32: no overflow in what it sizes)
# Fields of a policy config that name something a loader reads: SmolVLA's VLM (config, tokenizer,
# processor and, with load_vlm_weights, weights), by AutoConfig / AutoProcessor.from_pretrained.
ARTIFACT_FIELDS = ("vlm_model_name",)
# The files a LeRobot checkpoint is loaded from (a Hub snapshot of a repo id downloads these only).
CHECKPOINT_PATTERNS = ["config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
                       "policy_*processor*.safetensors", "amf_pretrain.json", "train_config.json", "README.md"]
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_SAFETENSORS_HEADER = 100 * 2**20


def check_checkpoint(folder: Path, what: str | None = None, user_values: dict | None = None) -> None:
    """Refuse, in one line, a checkpoint folder a loader could be made to misuse (see the module).
    ``user_values``: config values the user gave on the command line (``--policy.vlm_model_name``),
    allowed as given."""
    folder = Path(folder)
    what = what or f"Checkpoint {folder.name}/"
    check_tree(folder, what)
    config = read_json(folder / "config.json", what) if (folder / "config.json").exists() else None
    if config is not None:
        check_policy_config(config, folder, what, user_values or {})
    check_processor_files(folder, trusted={"tokenizer_name": (user_values or {}).get("vlm_model_name")})
    for path in sorted(folder.rglob("*.safetensors")):
        check_safetensors(path, what)


def check_policy_config(config: object, folder: Path, what: str, user_values: dict) -> None:
    if not isinstance(config, dict):
        raise UntrustedFileError(f"{what}: config.json is not a JSON object: refused.")
    check_policy_type(config.get("type"), f"{what}: config.json")
    if config.get("use_peft"):
        raise UntrustedFileError(f"{what}: config.json sets use_peft=true (LeRobot would load the base its "
                                 "adapter_config.json names): lerobot-amf loads plain checkpoints and routed_model/ "
                                 "folders; refused.")
    check_sizes(config, f"{what} config.json")
    for key in ("input_features", "output_features"):
        for name, spec in (config.get(key) or {}).items():
            shape = spec.get("shape") if isinstance(spec, dict) else None
            if not (isinstance(shape, list) and math.prod(shape) <= MAX_FEATURE_VALUES):
                raise UntrustedFileError(f"{what}: config.json {key}[{name!r}] has shape {shape!r}: at most "
                                         f"{MAX_FEATURE_VALUES:,} values per feature; refused.")
    for key in ARTIFACT_FIELDS:
        value = config.get(key)
        if value is None or key in user_values:  # the user's own value replaces the file's
            continue
        if not names_no_folder_outside(value, folder):
            raise UntrustedFileError(
                f"{what}: config.json {key}={value!r} names a folder outside the checkpoint: refused (nothing outside "
                f"it is read). If that folder is yours, pass it yourself: --policy.{key}=<folder>.")


def check_policy_type(value: object, what: str) -> None:
    if value not in LOADABLE_POLICY_TYPES:
        raise UntrustedFileError(f"{what} names policy type {value!r}: lerobot-amf loads only "
                                 f"{', '.join(LOADABLE_POLICY_TYPES)}; refused (nothing was loaded).")


def check_sizes(value: object, what: str, key: str | None = None) -> None:
    """Every integer in a JSON value within bounds: ``SIZE_BOUNDS`` by key, else ``MAX_INT``."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_sizes(v, what, k)
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            raise UntrustedFileError(f"{what}: {key} holds {len(value):,} items, over {MAX_LIST:,}: refused.")
        for v in value:
            check_sizes(v, what, key)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UntrustedFileError(f"{what}: {key}={value} is not a finite number: refused.")
    elif isinstance(value, int) and not isinstance(value, bool):
        high = SIZE_BOUNDS.get(key, MAX_INT)
        if not -MAX_INT <= value <= high:
            raise UntrustedFileError(f"{what}: {key}={value:,} is beyond what this tool loads (at most {high:,}): "
                                     "refused before anything was allocated.")


def check_safetensors(path: Path, what: str) -> None:
    """A ``.safetensors`` file whose header is well formed, every tensor inside the file's bytes and
    sized as its dtype and shape say (the format's own rules, read from the 8-byte length and the
    JSON header only)."""
    shown = f"{what}: {path.name}"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise UntrustedFileError(f"{shown} is not a safetensors file (its header length does not fit the file): "
                                     "refused.")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise UntrustedFileError(f"{shown} is not a safetensors file (its header is not a JSON object): refused.")
    data = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
        ok = ok and isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1] <= data or \
                offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[entry["dtype"]]:
            raise UntrustedFileError(f"{shown}: tensor {name!r} does not fit the file (dtype, shape and offsets "
                                     "disagree with its bytes): refused.")


def check_file_in(folder: Path, relative: str, what: str) -> Path:
    """``folder/relative``, a regular file (or link to one) inside ``folder``."""
    path = Path(folder) / relative
    check_entry(path, folder, what, shown=relative)
    return path


def local_checkpoint(path: str, what: str | None = None, user_values: dict | None = None) -> Path:
    """The local folder of the checkpoint ``--policy.path`` names, checked (``check_checkpoint``): the
    folder itself, or for a Hub repo id the snapshot of exactly the files a checkpoint loads."""
    never_prompt_for_remote_code()
    local = Path(path).expanduser()
    if not local.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

        try:
            local = Path(snapshot_download(str(path), allow_patterns=CHECKPOINT_PATTERNS))
        except LocalEntryNotFoundError:
            raise AMFInputError(f"{what or path}: no such folder, and the Hub repo is not in the local cache while "
                                f"offline (HF_HUB_OFFLINE=1 or no network): download it first (hf download {path}) "
                                "or go online.") from None
        except (RepositoryNotFoundError, HFValidationError):
            raise AMFInputError(f"{what or path}: no such folder, and no Hub repo {path} (or no access to it).") \
                from None
    check_checkpoint(local, what or f"--policy.path={path}", user_values)
    return local


def user_policy_values(overrides: list[str] | None) -> dict:
    """``--policy.<key>=<value>`` flags the user gave (LeRobot's ``parser.get_cli_overrides("policy")``:
    ``["--key=value", ...]``) as ``{key: value}``: values of the user's own, which a checkpoint's file
    may then hold too."""
    values = {}
    for flag in overrides or []:
        key, sep, value = str(flag).lstrip("-").partition("=")
        if sep:
            values[key] = value
    return values
