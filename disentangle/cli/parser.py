"""The scripts' argument parser, entry point and argument types: one-line errors, exit statuses."""
from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
from typing import Callable

from ..core import distributed
from ..core.errors import UserError
from ..io import artifacts


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in ``--help``, no abbreviated flags (every flag has aliases),
    and errors on one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


_depth = 0   # entry points running, nested when one script's main calls another's


def entrypoint(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn ``UserError`` into one line on stderr and exit status 2, an interruption (Ctrl-C) into
    one line and status 130; the run's output locks are released either way. Under torchrun only
    rank 0 prints its summary (the others' stdout and progress bars are silenced; their errors
    still show, prefixed with their rank), and the process group ends with the stage."""
    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        global _depth
        import matplotlib
        matplotlib.use("Agg")            # scripts only write figures to files, never show them
        rank = int(os.environ.get("RANK", "0"))
        try:
            _depth += 1
            with artifacts.run_scope(), _quiet(rank > 0 and _depth == 1):
                return main(argv) or 0
        except UserError as e:
            # A DataLoader worker re-raises with the worker's traceback in the message: keep its last line.
            message = str(e).strip().splitlines()[-1]
            where = f"rank {rank}: " if distributed.world_size() > 1 else ""
            print(f"error: {where}{message.split('UserError: ', 1)[-1]}", file=sys.stderr)
            return 2
        except SystemExit as e:          # argparse's one-line errors and --help, for in-process callers
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        except KeyboardInterrupt:
            if _depth > 1:             # a stage run by another (the grid): the outermost reports it
                raise
            print("interrupted; finished work is kept: rerun the same command to resume", file=sys.stderr)
            return 130
        finally:
            _depth -= 1
            if _depth == 0:
                distributed.shutdown()
    return wrapped


@contextlib.contextmanager
def _quiet(on: bool):
    """Silence stdout and tqdm (a rank other than 0 under torchrun)."""
    if not on:
        yield
        return
    import tqdm
    init = tqdm.tqdm.__init__
    tqdm.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            yield
    finally:
        tqdm.tqdm.__init__ = init


def artifacts_in(folder) -> int:
    """A stage's last words: where its artifacts are. Returns the exit status 0."""
    print(f"artifacts in {folder}/")
    return 0


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return 0 if text.strip() == "0" else positive(text)


def finite(text: str) -> float:
    """An argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def batch_size(text: str) -> int | str:
    """``--batch_size`` value: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number of images (at least 1) or 'auto', got {text!r}") from None


def images(text: str) -> int | str:
    """``--images``: a count when it is a number, else ``samples`` or a folder of photos."""
    return positive(text) if text.lstrip("-").isdigit() else text


def target(text: str) -> str | int:
    """``--target``: ``pred`` (each image's prediction; ``top1`` is the same), ``label`` (its true
    class) or a class index."""
    if text in ("pred", "top1"):
        return "pred"
    if text == "label":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'pred', 'top1', 'label' or a class index, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class index is 0 or more, got {value}")
    return value


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (blanks dropped)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
