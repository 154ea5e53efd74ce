"""Fine-tuning steps with LeRobot's own training pieces: ``loop.py`` runs ``lerobot-train``'s inner
loop for N steps on a policy that persists across rounds; ``replay.py`` mixes pretraining frames
into each batch (``--amf.isolation=shared_replay``)."""

from lerobot_amf.training.loop import loss_summary, train_steps

__all__ = ["loss_summary", "train_steps"]
