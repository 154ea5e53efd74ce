"""Files from others (checkpoints, routing maps, datasets, run directories) are hostile until checked:
nothing they name is imported or executed, nothing they name or link to is read outside their
folder, and what they hold is bounded and finite before anything is allocated or trained on.

One module per kind of rule: ``files`` (plain names, paths inside a folder, regular files and
links inside it, bounded JSON), ``processors`` (the processor steps a checkpoint may name, and
their configs), ``checkpoints`` (a checkpoint folder or Hub repo checked whole before loading),
``datasets`` (a dataset copy's tree, templates and episode index), ``numbers`` (finite values).
"""

from lerobot_amf.trust.checkpoints import (LOADABLE_POLICY_TYPES, check_checkpoint, check_policy_type,
                                           check_safetensors, check_sizes, local_checkpoint, user_policy_values)
from lerobot_amf.trust.datasets import check_dataset_copy, check_path_templates
from lerobot_amf.trust.files import (LOCAL_PATH_PLACEHOLDER, MAX_SETTINGS_BYTES, UntrustedFileError, check_entry,
                                     check_inside, check_plain_name, check_tree, is_inside, names_no_folder_outside,
                                     read_bounded_text, read_json)
from lerobot_amf.trust.numbers import check_finite, check_finite_processors
from lerobot_amf.trust.processors import (ALLOWED_STEPS, artifacts_inside, check_processor_files, check_processor_step,
                                          guard_processor_loading, user_tokenizer)

__all__ = [
    "ALLOWED_STEPS", "LOADABLE_POLICY_TYPES", "LOCAL_PATH_PLACEHOLDER", "MAX_SETTINGS_BYTES", "UntrustedFileError",
    "artifacts_inside", "check_checkpoint", "check_dataset_copy", "check_entry", "check_finite",
    "check_finite_processors", "check_inside", "check_processor_files", "check_path_templates", "check_plain_name", "check_policy_type",
    "check_processor_step", "check_safetensors", "check_sizes", "check_tree", "guard_processor_loading", "is_inside",
    "local_checkpoint", "names_no_folder_outside", "read_bounded_text", "read_json", "user_policy_values",
    "user_tokenizer",
]
