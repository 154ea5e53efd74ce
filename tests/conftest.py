"""Shared fixtures. Everything runs offline (HF_HUB_OFFLINE=1) on CPU, on data the tests build."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

# A tiny but complete configuration of the embedded default, and the one way to run the CLI as a
# subprocess: both live with the benchmarks, which use them too.
from benchmarks.common import TINY_ARGS, cli_command, cli_env  # noqa: E402


def run_cli(args, home: Path, check=True, timeout=600):
    """``lerobot-amf-train`` with ``args`` as a subprocess, the pretraining cache under ``home``."""
    proc = subprocess.run(cli_command(args), capture_output=True, text=True, env=cli_env(home), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"CLI failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_cli_here(args, home: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``lerobot-amf-train`` with ``args`` through its ``main()`` in this process, for bad input that
    must stop before any work: (exit code, stderr). One import of LeRobot for many cases instead
    of one per subprocess; the pretraining cache is ``run_cli``'s, under ``home``."""
    from lerobot_amf import train

    monkeypatch.setattr(sys, "argv", ["lerobot-amf-train", *args,
                                      f"--amf.pretrain.cache_dir={home / 'lerobot_amf_cache'}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train.main()
    return stop.value.code, capsys.readouterr().err


@pytest.fixture(scope="session")
def lerobot_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lerobot_home")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, lerobot_home) -> Path:
    """One complete tiny run (pretraining included), shared by the end-to-end tests."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=rebalancing"], lerobot_home)
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# amf with small embedding chunks, so that 2 processes really split the embedding pass.
AMF_ARGS = ["--amf.strategy=amf", "--amf.selection.chunk_size=8"]


@pytest.fixture(scope="session")
def tiny_amf_run(tmp_path_factory, lerobot_home, tiny_run) -> Path:
    """The tiny run with amf on one process, from the generalist ``tiny_run`` cached; its last round
    is evaluated on more episodes than the others (``--amf.final_eval_episodes``)."""
    out = tmp_path_factory.mktemp("runs") / "tiny_amf"
    run_cli([*TINY_ARGS, *AMF_ARGS, "--amf.final_eval_episodes=3", f"--output_dir={out}"], lerobot_home)
    return out


# A push goes to a Hub stand-in on 127.0.0.1 (tests/fake_hub.py) with a recognisable fake token, so
# that any copy of it anywhere is found.
TOKEN = "hf_FAKEtokenFORtestsXq7ZkWv3Pn9Lr2Ty5Bs8"


@pytest.fixture
def make_hub(monkeypatch, tmp_path):
    """Start a FakeHub and point huggingface_hub at it, as ``HF_ENDPOINT=<its url> HF_HUB_OFFLINE=0
    HF_HOME=<empty dir> HF_TOKEN=<fake>`` would when huggingface_hub is imported.

    huggingface_hub 1.x reads ``ENDPOINT`` when an ``HfApi`` is made and ``HF_HUB_OFFLINE`` on every
    request (the request hook of its shared httpx client), so no client needs to be remade."""
    from huggingface_hub import constants

    started = []
    hf_home = tmp_path / "hf_home"

    def start(**failures):
        from fake_hub import FakeHub

        hub = FakeHub(**failures).__enter__()
        started.append(hub)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        return hub

    start.hf_home = hf_home
    yield start
    for hub in started:
        hub.__exit__(None, None, None)


# ---- tiny LeRobot policy inputs shared by the embedding, family and isolation tests ----------
STATE, ENV, ACTION = "observation.state", "observation.environment_state", "action"


def features(state=39, env=50, action=4):
    """Input/output features of a state-only Metaworld-like policy (one-hot task in ENV)."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    return dict(
        input_features={
            STATE: PolicyFeature(type=FeatureType.STATE, shape=(state,)),
            ENV: PolicyFeature(type=FeatureType.ENV, shape=(env,)),
        },
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action,))},
    )


def diffusion_batch(b=3, seed=1):
    """A preprocessed batch for a diffusion policy with n_obs_steps=2, horizon=16, 4-dim actions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        STATE: torch.randn(b, 2, 39, generator=g),
        ENV: torch.randn(b, 2, 50, generator=g),
        ACTION: torch.randn(b, 16, 4, generator=g),  # ignored by the embedding
        "action_is_pad": torch.zeros(b, 16, dtype=torch.bool),
    }


# ---- the real LIBERO simulator ------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks next to a CPU-rendering simulator: one torch thread avoids oversubscribed cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def libero_rendering():
    """Skip only where MuJoCo cannot render headless (no EGL), which LIBERO's cameras need."""
    probe = "import mujoco; from mujoco.egl import GLContext; c = GLContext(8, 8); c.make_current(); c.free()"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "MUJOCO_GL": "egl"}, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"LIBERO rendering is impossible here: MuJoCo cannot create an EGL context ({last})")


# ---- the fault-injection benchmark (benchmarks/faults.py), for the phase-marker and fault tests ----
def load_faults():
    """``benchmarks/faults.py`` as a module of its own, loaded from its file."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("faults", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
