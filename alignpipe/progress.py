"""Progress for long steps: a bar on a terminal, periodic log lines elsewhere.

Inside a kfp task or a Beam worker stdout is not a terminal, so a bar would be
noise; there the same calls log `desc: n/total (rate/s, ETA)` every
`log_every_s` seconds.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("alignpipe")


class Progress:
    """Counts work done on one step.

    Example:
        >>> with Progress(total=3, desc="download", unit="img") as p:
        ...     for _ in range(3):
        ...         p.update(1)
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", log_every_s: float = 10.0):
        self.total, self.desc, self.unit, self.log_every_s = total, desc, unit, log_every_s
        self.n = 0
        self._start = self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: object) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.log_every_s:
            self._last = now
            log.info("%s", self.line(postfix))

    def line(self, postfix: dict[str, object] | None = None) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.n / elapsed
        text = f"{self.desc}: {self.n}"
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            text += f"/{self.total} ({100 * self.n / self.total:.0f}%, ETA {eta:.0f}s)"
        text += f" {rate:.1f} {self.unit}/s"
        if postfix:
            text += " " + " ".join(f"{k}={v}" for k, v in postfix.items())
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            log.info("%s done", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
