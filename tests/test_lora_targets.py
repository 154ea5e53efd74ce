"""LoRA target checks (``isolation/lora_targets.py``): targets missing from the policy, matching no
module or naming a module peft cannot wrap are one-line input errors."""

import pytest

from lerobot_amf.errors import AMFInputError


def test_lora_targets_missing_from_the_policy_are_one_line():
    from isolation_fixtures import tiny_policy

    from lerobot_amf.isolation.lora_targets import check_lora_targets
    from lerobot_amf.families import family_of

    policy = tiny_policy()
    assert check_lora_targets(policy, family_of("diffusion").lora_targets)  # the defaults fit
    # peft itself adapts the one that exists and says nothing about the other
    policy.wrap_with_peft(peft_cli_overrides={"target_modules": ["final_conv.1", "q_proj"]})
    policy = tiny_policy()
    for targets, needle in [(["final_conv.1", "q_proj"], "not in the policy: q_proj"),
                            (r"diffusion\.nothing\..*", "matches no module"),
                            (["final_conv.0.block.1"], "cannot wrap: diffusion.unet.final_conv.0.block.1 (GroupNorm)"),
                            ("([", "not a valid regular expression")]:
        with pytest.raises(AMFInputError, match=None) as err:
            check_lora_targets(policy, targets)
        assert needle in str(err.value) and "\n" not in str(err.value)
