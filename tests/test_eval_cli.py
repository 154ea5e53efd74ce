"""``lerobot-amf-eval``'s input checks: bad input exits 2 with one line before anything is written.
Its rollouts in the LIBERO simulator: test_libero_env.py."""

import sys

import pytest
from lerobot.envs.configs import LiberoEnv as LiberoEnvConfig

from lerobot_amf.errors import AMFInputError


def test_eval_cli_bad_input_exits_2_with_one_line_before_writing(tmp_path, monkeypatch, capsys):
    from lerobot_amf import eval_cli

    out = tmp_path / "eval"
    monkeypatch.setattr(sys, "argv", ["lerobot-amf-eval", "--env.type=libero", "--env.task=libero_spatial/11",
                                      "--policy.path=someone/not_downloaded", f"--output_dir={out}"])
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1].startswith("lerobot-amf-eval: error:") and "libero_spatial task ids are 0..9" in err[-1]
    assert not out.exists()


@pytest.mark.parametrize("amf, policy_path, needle", [
    ({"eval_episodes": 0}, "someone/not_downloaded", "amf.eval_episodes=0"),
    ({}, None, "needs --policy.path"),
    ({}, "someone/not_downloaded", "not in the local cache while offline"),
])
def test_eval_cli_input_errors_name_the_bad_value(tmp_path, amf, policy_path, needle):
    from lerobot_amf.eval_cli import AMFEvalConfig, AMFEvalPipelineConfig, amf_eval

    out = tmp_path / "eval"
    cfg = AMFEvalPipelineConfig(env=LiberoEnvConfig(task="libero_goal/0"), amf=AMFEvalConfig(**amf), output_dir=out)
    cfg.policy_path = policy_path  # what --policy.path sets
    with pytest.raises(AMFInputError, match=needle):
        amf_eval(cfg)
    assert not out.exists()
