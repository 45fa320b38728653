"""A quiet training loop: the loss in the tqdm bar instead of printed dicts, no pin-memory warning.

The Trainer's default progress callback (transformers' ``ProgressCallback``) writes every log entry as a
printed dict (``{'loss': ...}``) to stdout; :class:`LossProgressCallback` shows the latest loss, gradient norm
and learning rate as the bar's postfix instead (the full log still goes to ``stage.json``'s
``log_history``). :func:`train_quietly` is the shared ``IcuTrainer`` loop with that callback, and with
torch's "pin_memory ... no accelerator" warning filtered (``dataloader_pin_memory`` defaults to on when no
device is forced, which on a CPU-only machine only produces that warning).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

from icu_unlearn.models.loading import quiet_transformers

#: Log entries shown in the bar's postfix, in this order.
SHOWN = ("loss", "grad_norm", "learning_rate")


class LossProgressCallback(ProgressCallback):
    """transformers' progress bar, with the log entries as its postfix instead of printed lines."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Show the latest loss (and gradient norm, learning rate) next to the bar."""
        if not (state.is_world_process_zero and self.training_bar is not None and logs):
            return
        shown = {k: f"{logs[k]:.4g}" for k in SHOWN if isinstance(logs.get(k), (int, float))}
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)


def quiet_progress(trainer: Any) -> Any:
    """Replace a Trainer's printing progress callbacks by :class:`LossProgressCallback`; returns it."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LossProgressCallback())
    return trainer


@contextlib.contextmanager
def no_pin_memory_warning() -> Iterator[None]:
    """Silence torch's DataLoader warning that pinned memory is requested without an accelerator."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*", category=UserWarning)
        yield


def train_quietly(
    model: Any,
    objective: Any,
    dataset: Any,
    collate: Any,
    args: Any,
    optimizer: Any = None,
    callbacks: list | None = None,
) -> Any:
    """Run the shared ``IcuTrainer`` loop quietly; returns the trainer (``history`` holds the logged losses)."""
    from icu_unlearn.training.loop import IcuTrainer

    with quiet_transformers(), no_pin_memory_warning():
        trainer = IcuTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=collate,
            objective=objective,
            optimizers=(optimizer, None),
            callbacks=callbacks,
        )
        quiet_progress(trainer)
        trainer.train()
    return trainer
