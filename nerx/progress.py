"""Progress bars for the Python API's long calls (``progress=True``), through ``tqdm.auto``:
a widget in a notebook, a text bar on a terminal. The command line draws its own with rich."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def bar(
    items: Iterable[T],
    *,
    enabled: bool,
    total: int | None = None,
    unit: str = "doc",
    desc: str | None = None,
) -> Iterable[T]:
    """``items`` as they are, or counted by a bar when ``enabled``; ``total`` defaults to
    the length of ``items`` when it has one (a stream is counted without a total)."""
    if not enabled:
        return items
    return _counted(items, length(items) if total is None else total, unit, desc)


def length(items: Any) -> int | None:
    """``len(items)`` for a sized collection; ``None`` for a stream (never consumed here)."""
    return len(items) if hasattr(items, "__len__") else None


def _counted(items: Iterable[T], total: int | None, unit: str, desc: str | None) -> Iterator[T]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit=unit, desc=desc) as shown:
        for item in items:
            yield item
            shown.update(1)


class StepBar:
    """An ``on_step`` callback for training: one bar over every optimizer step of the run,
    with the epoch and the loss beside it."""

    def __init__(self, then: Callable[[Any], None] | None = None) -> None:
        self._then = then
        self._bar = None

    def __call__(self, progress) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            # A resumed run starts where its checkpoint stopped.
            done = progress.global_step - 1
            self._bar = tqdm(total=progress.total_steps, initial=done, unit="step", desc="train")
        self._bar.update(1)
        self._bar.set_postfix(epoch=progress.epoch, loss=f"{progress.loss:.4f}", refresh=False)
        if self._then is not None:
            self._then(progress)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
