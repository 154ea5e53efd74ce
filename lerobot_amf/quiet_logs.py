"""LeRobot log lines that would bury our own output, each shortened in one place.

LeRobot 0.6.1's ``lerobot.utils.import_utils.get_safe_default_video_backend`` logs the whole
torchcodec loading traceback (about 150 lines, FFmpeg versions 4 to 8) every time it is called
where torchcodec is installed but FFmpeg's shared libraries are not (a CPU machine without the
system's FFmpeg): ``DatasetConfig``'s default and every ``LeRobotDataset`` call it, so one CLI
run printed it several times before its first line of its own, and a bad flag's one-line error
came after it. The fallback (PyAV, which ships its own FFmpeg) is right and changes no frame;
here it is said once, in one line, at debug level.

peft 0.22 warns, on import, that it will drop Transformers < 5.6; LeRobot 0.6.x requires
Transformers < 5.6, so every run on that stack printed it before its own first line (and a bad
flag's one-line error came third). Nothing a user of LeRobot 0.6 can act on: that one warning is
filtered, by its message, before anything imports peft.
"""

from __future__ import annotations

import logging
import warnings

PEFT_TRANSFORMERS_DEPRECATION = r"Support for Transformers < 5\.6 is deprecated in PEFT"
TORCHCODEC_FALLBACK = "'torchcodec' is installed but cannot be loaded"
SAID_ONCE = ("torchcodec cannot load FFmpeg's shared libraries here (install the system's FFmpeg to use it); "
             "LeRobot decodes videos with PyAV instead.")


class OneLineTorchcodecFallback(logging.Filter):
    """Drops LeRobot's torchcodec-fallback warning; ``SAID_ONCE`` goes to our debug log instead."""

    def __init__(self):
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if TORCHCODEC_FALLBACK not in record.getMessage():
            return True
        if not self.said:
            self.said = True
            logging.getLogger(__name__).debug(SAID_ONCE)
        return False


def quiet_lerobot_logs() -> None:
    """Install the filter on the logger that says it (idempotent)."""
    logger = logging.getLogger("lerobot.utils.import_utils")
    if not any(isinstance(f, OneLineTorchcodecFallback) for f in logger.filters):
        logger.addFilter(OneLineTorchcodecFallback())


def quiet_peft_transformers_deprecation() -> None:
    """Ignore peft's warning that it will drop the Transformers LeRobot 0.6 requires (that one only)."""
    warnings.filterwarnings("ignore", message=PEFT_TRANSFORMERS_DEPRECATION, category=FutureWarning)
