"""The wiring layer: one module per stage turns paths and settings into objects, runs the stage and writes its
files. Commands (pipeline/commands) call these; stages (stages/) never import them."""

from collections.abc import Callable
from contextlib import AbstractContextManager

# How a job shows progress without knowing the terminal: progress(total, label[, unit]) gives a context whose value
# is called with the number of items just finished (commands pass a tqdm bar; the API passes none by default).
ProgressFactory = Callable[..., AbstractContextManager[Callable[[int], None]]]
