"""A real LeRobot SmolVLA policy, with random weights, small enough for CPU tests, built offline.

Tests and benchmarks need a *real* ``lerobot.policies.smolvla.SmolVLAPolicy`` (its VLM + action
expert, its flow-matching loss, its action queue, its ``save_pretrained`` / ``from_pretrained``,
LeRobot's own SmolVLA pre/post-processors) without the network. The stock one cannot serve: its
VLM, ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``, is GB-sized and lives on the Hub, and SmolVLA
reads its config, tokenizer and processor from there even with ``load_vlm_weights=False``.

``SmolVLAConfig.vlm_model_name`` may however name a LOCAL folder. :func:`build_tiny_vlm` writes one
holding a tiny SmolVLM setup, all through transformers' own classes and ``save_pretrained``:

* a ``SmolVLMConfig``: vision tower hidden 32, 1 layer, 2 heads, images 32x32 in 8x8 patches (16
  patches, 4 image tokens after the pixel-shuffle connector); Llama text model hidden 64, 2 layers,
  4 attention heads of 16 / 2 key-value heads; vocabulary = the tokenizer's size;
* a byte-level BPE tokenizer trained with ``tokenizers`` on a fixed corpus (LIBERO-like
  instructions: deterministic), wrapped as ``PreTrainedTokenizerFast``, whose vocabulary already
  holds SmolVLM's special tokens (``<|im_start|>``, ``<|im_end|>`` = pad, ``<end_of_utterance>``,
  ``<fake_token_around_image>``, ``<image>``, ``<global-img>``, ``<row_i_col_j>`` for i, j in
  1..6); byte-level, so any text tokenizes (no unknown token). The four image tokens are passed as
  ``extra_special_tokens`` (a dict), which transformers 5 turns into named special tokens, saved as
  top-level keys of ``tokenizer_config.json``: that is what gives ``tokenizer.fake_image_token_id``
  / ``global_image_token_id`` / ``image_token_id`` / ``end_of_utterance_token_id``, which
  ``VLAFlowMatching.__init__`` and SmolVLM's processor read;
* a ``SmolVLMImageProcessor`` / ``SmolVLMVideoProcessor`` (32 px, no image splitting) and a
  ``SmolVLMProcessor`` (``image_seq_len`` 4), all saved by transformers 5 into one
  ``processor_config.json``, so ``AutoProcessor.from_pretrained(folder)`` and
  ``AutoTokenizer.from_pretrained(folder)`` work offline.

:func:`tiny_smolvla_config` then gives a ``SmolVLAConfig`` on that folder (``load_vlm_weights``
False, images resized with padding to 32x32, 2 VLM layers, chunk 4, 2 denoising steps, 24 language
tokens): ``SmolVLAPolicy(cfg)`` has 257,888 parameters (103,648 trainable), the folder builds in
~0.1 s and the policy in ~0.1 s (after 8-13 s of importing lerobot / transformers), one forward +
backward on a batch of 2 takes ~15-35 ms on one CPU thread; it trains, ``select_action``s and saves
/ reloads identically (same state dict, same actions, same loss); and
``make_smolvla_pre_post_processors(cfg, ...)`` tokenizes task strings offline (note: that
pre-processor appends ``"\\n"`` to every task string, and with SmolVLA's default
``pad_language_to="longest"`` pads the tokens to the batch's longest, not to
``tokenizer_max_length``, which only truncates). :data:`LIBERO_FEATURES` are the features
LeRobot's LIBERO env and the ``lerobot/libero`` datasets give a policy.

Things to know:

* The VLM weights are random (``load_vlm_weights=False`` builds the VLM from its config) and
  SmolVLA, with ``train_expert_only=True`` (its default), freezes them: only the action expert and
  the projections train. Seed ``torch`` before ``SmolVLAPolicy(cfg)`` for reproducible weights.
* A saved policy's ``config.json`` names the VLM folder by its absolute path (SmolVLA re-reads the
  VLM config and processor from it when it is reloaded, and the saved pre-processor's tokenizer
  step does too): the folder must still be there when the policy or processors are reloaded.
* SmolVLM's processor needs the PyPI package ``num2words`` (transformers raises an ``ImportError``
  in ``SmolVLMProcessor.__init__`` without it, so SmolVLA cannot be built at all, even from a local
  folder); LeRobot's ``smolvla`` extra installs it.
* ``SmolVLMWithExpertModel.set_requires_grad`` raises when one of its frozen-layer name patterns
  (``lm_head``, ``text_model.norm.weight``, ``text_model.layers.<last>.``) matches no parameter;
  the tiny VLM keeps transformers' own module names, so ``train_expert_only=False`` builds too.
* LeRobot prints ``Reducing the number of VLM layers to 2 ...`` (a bare ``print``) to stdout each
  time a SmolVLA is built or reloaded; harmless, but it shows in captured output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

# Bump when the folder's recipe changes: a folder built by another version is rebuilt.
# 2: written by transformers 5 (one processor_config.json, the tokenizer's named special tokens).
_RECIPE_VERSION = "tiny-smolvlm-2"
_MARKER = "tiny_vlm_complete.json"  # written last: its presence (with this version) = complete

IMAGE_SIZE, PATCH_SIZE, SCALE_FACTOR = 32, 8, 2
IMAGE_SEQ_LEN = ((IMAGE_SIZE // PATCH_SIZE) ** 2) // SCALE_FACTOR**2  # image tokens per image: 4
# Upper bound for the BPE trainer (bytes 256 + special tokens 43 + merges); the small corpus stops
# it earlier: the vocabulary has 443 tokens (with tokenizers 0.22).
BPE_VOCAB_SIZE = 600

# SmolVLM's special tokens (their SmolVLM2 names), the image ones as its processor and SmolVLA use.
_SPECIAL = {
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
}
_IMAGE_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
_ROW_COL_TOKENS = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]

# A fixed corpus (so the BPE training is deterministic): LIBERO-style instructions.
_OBJECTS = ["black bowl", "plate", "ramekin", "alphabet soup", "tomato sauce", "basket", "stove",
            "middle drawer", "cabinet", "wine bottle", "cream cheese", "butter", "ketchup",
            "mug", "microwave", "moka pot", "book", "caddy", "frying pan", "white bowl"]
_VERBS = ["pick up the {a} and place it on the {b}", "put the {a} in the {b}",
          "put both the {a} and the {b} in the basket", "open the {a} of the {b}",
          "turn on the {a}", "push the {a} to the front of the {b}",
          "pick up the {a} next to the {b} and place it on the plate"]

# LIBERO as LeRobot 0.6.1 gives it to a policy: `LiberoEnv` (lerobot/envs/configs.py) maps the
# cameras `pixels/agentview_image` and `pixels/robot0_eye_in_hand_image` to these two keys, and its
# `LiberoProcessorStep` (lerobot/processor/env_processor.py) flattens `robot_state` into an 8-dim
# `observation.state` (eef pos 3, axis-angle 3, gripper qpos 2); 7-dim actions. The images are the
# 256x256 of the `lerobot/libero` / `HuggingFaceVLA/libero` datasets (the env renders 360x360 by
# default); SmolVLA resizes with padding to `resize_imgs_with_padding` itself, so tests may feed any
# size (the shape is not checked; VISUAL features are not normalized).
LIBERO_FEATURES: dict[str, PolicyFeature] = {
    f"{OBS_IMAGES}.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 256, 256)),
    f"{OBS_IMAGES}.image2": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 256, 256)),
    OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(8,)),
    ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(7,)),
}


def _corpus() -> list[str]:
    lines = []
    for template in _VERBS:
        for i, a in enumerate(_OBJECTS):
            b = _OBJECTS[(i * 7 + 3) % len(_OBJECTS)]
            lines.append(template.format(a=a, b=b))
    return lines


def _tokenizer():
    """The tiny byte-level BPE tokenizer, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(
        [_SPECIAL["unk_token"], _SPECIAL["bos_token"], _SPECIAL["pad_token"], _SPECIAL["eos_token"],
         *_IMAGE_TOKENS.values(), *_ROW_COL_TOKENS]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, **_SPECIAL, extra_special_tokens=dict(_IMAGE_TOKENS),
        model_max_length=2048, padding_side="right", clean_up_tokenization_spaces=False)


def _model_config(tokenizer):
    """The tiny ``SmolVLMConfig`` (vision 32 / 1 layer, Llama text 64 / 2 layers)."""
    from transformers import SmolVLMConfig

    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE}
    text = {"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5, "rope_theta": 10_000.0, "tie_word_embeddings": False,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}
    return SmolVLMConfig(
        vision_config=vision, text_config=text, scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(_IMAGE_TOKENS["image_token"]),
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, use_cache=True)


def _write(folder: Path) -> None:
    """Writes every file of the tiny VLM into ``folder`` (an existing, empty directory)."""
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    tokenizer = _tokenizer()
    _model_config(tokenizer).save_pretrained(folder)
    size, max_size = {"longest_edge": IMAGE_SIZE}, {"longest_edge": IMAGE_SIZE}
    image_processor = SmolVLMImageProcessor(
        size=size, max_image_size=max_size, do_image_splitting=False, do_pad=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video_processor = SmolVLMVideoProcessor(
        size=size, max_image_size=max_size, do_pad=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, image_seq_len=IMAGE_SEQ_LEN)
    processor.save_pretrained(folder)  # tokenizer, image / video processor and processor configs
    (folder / _MARKER).write_text(json.dumps({"recipe": _RECIPE_VERSION}) + "\n")


def _complete(folder: Path) -> bool:
    try:
        return json.loads((folder / _MARKER).read_text()).get("recipe") == _RECIPE_VERSION
    except (OSError, ValueError):
        return False


def build_tiny_vlm(folder: Path) -> Path:
    """Writes the tiny SmolVLM folder (model config, tokenizer, processors) at ``folder``; returns it.

    Usable as ``SmolVLAConfig.vlm_model_name``. Deterministic (same files every time), offline,
    and idempotent: a folder already complete (its marker file written last, same recipe) is left
    as it is. The files are written into a temporary sibling folder and moved in, each file by an
    atomic rename, the marker last, so a concurrent reader never sees a half-written file and two
    concurrent builders write identical files. ``folder`` may exist (e.g. an empty ``tmp_path``).
    """
    folder = Path(folder)
    if _complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write(tmp)
        folder.mkdir(exist_ok=True)
        names = sorted(p.name for p in tmp.iterdir() if p.name != _MARKER) + [_MARKER]
        for name in names:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_smolvla_config(
    vlm_folder: Path,
    input_features: dict[str, PolicyFeature] | None = None,
    output_features: dict[str, PolicyFeature] | None = None,
    **overrides,
) -> SmolVLAConfig:
    """The tiny ``SmolVLAConfig`` on the VLM folder of :func:`build_tiny_vlm` (built if missing).

    CPU, no Hub push, random VLM (``load_vlm_weights=False``), images resized with padding to
    32x32, 2 VLM layers, chunks of 4 actions all executed, 2 denoising steps, 24 language tokens.
    ``input_features`` / ``output_features`` default to those of :data:`LIBERO_FEATURES`, and are
    copied (SmolVLA's ``validate_features`` adds to the input features dict in place); any
    ``SmolVLAConfig`` field may be overridden by keyword.
    """
    vlm_folder = build_tiny_vlm(Path(vlm_folder))
    if input_features is None:
        input_features = {k: f for k, f in LIBERO_FEATURES.items() if f.type is not FeatureType.ACTION}
    if output_features is None:
        output_features = {k: f for k, f in LIBERO_FEATURES.items() if f.type is FeatureType.ACTION}
    kwargs = dict(
        vlm_model_name=str(vlm_folder.resolve()),
        load_vlm_weights=False,
        device="cpu",
        push_to_hub=False,
        chunk_size=4,
        n_action_steps=4,
        num_steps=2,
        resize_imgs_with_padding=(IMAGE_SIZE, IMAGE_SIZE),
        num_vlm_layers=2,
        tokenizer_max_length=24,
        scheduler_warmup_steps=10,
        scheduler_decay_steps=100,
    )
    kwargs.update(overrides)
    return SmolVLAConfig(input_features=dict(input_features), output_features=dict(output_features),
                         **kwargs)
