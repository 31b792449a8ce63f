"""One log line per training epoch (loss, seconds): long fits show that they move, without Keras's
per-step bars flooding Spark task logs."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from fashionrec.training.tf_env import import_tensorflow

tf = import_tensorflow()


class EpochLog(tf.keras.callbacks.Callback):
    """Prints `<name> epoch i/n: loss=… (s)` to stderr after each epoch; silent unless `enabled`. Counts
    its own epochs, so one log can follow several `fit` calls (training in stages)."""

    def __init__(self, name: str, epochs: int, enabled: bool = True) -> None:
        super().__init__()
        self.name, self.epochs, self.enabled = name, epochs, enabled
        self._started = 0.0
        self.done = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.done += 1
        if not self.enabled:
            return
        loss = (logs or {}).get("loss")
        shown = f"{float(loss):.4f}" if loss is not None else "-"
        seconds = time.perf_counter() - self._started
        print(f"{self.name} epoch {self.done}/{self.epochs}: loss={shown} ({seconds:.1f} s)", file=sys.stderr)
        logging.getLogger(__name__).debug("epoch %s done", self.done)
