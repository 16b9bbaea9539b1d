"""`python -m trainer.task`, each logged step slowed down, for tests that SIGTERM training mid-run.

    python -m tests.training.resume_worker SECONDS_PER_ROW <trainer.task arguments>

The pause comes after each history row is logged (set `train.log_every_steps=1` for
one a step), outside the computation, so the run's numbers are untouched; it only
gives a test time to see a checkpoint appear and signal the process before training
ends, however fast the machine.
"""

from __future__ import annotations

import logging
import sys
import time

from trainer.task import main


class _PauseAfterRows(logging.Handler):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("step "):
            time.sleep(self.seconds)


if __name__ == "__main__":
    logging.getLogger("alignpipe").addHandler(_PauseAfterRows(float(sys.argv[1])))
    sys.exit(main(sys.argv[2:]))
