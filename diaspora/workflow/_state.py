"""Where ``diaspora run`` keeps a workflow's state when it embeds its server.

The state directory is ``$DIASPORA_STATE_DIR``, else ``./.diaspora/``. It
holds the embedded server's JetStream store (``jetstream/``: every stream,
the checkpoints in KV, the object store) and the actors' local state
(``history/``: producer histories), so stopping a workflow and running it
again resumes every actor from its checkpoint with its streams intact. One
run at a time uses a directory (``lock``). ``ephemeral=True`` uses a fresh
temporary directory, deleted on exit.

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as home:
...     os.environ["DIASPORA_STATE_DIR"] = home
...     with StateDir.open() as state:
...         print(state.store.name, os.environ["DIASPORA_STATE_DIR"] == str(state.path))
jetstream True
>>> del os.environ["DIASPORA_STATE_DIR"]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from diaspora.errors import ConfigError

__all__ = ["DEFAULT_STATE_DIR", "STATE_DIR_ENV", "StateDir"]

STATE_DIR_ENV: Final = "DIASPORA_STATE_DIR"
#: The state directory when ``$DIASPORA_STATE_DIR`` is unset, relative to the current one.
DEFAULT_STATE_DIR: Final = ".diaspora"


@dataclass(frozen=True, slots=True)
class StateDir:
    """One run's state directory (see the module docstring)."""

    path: Path
    ephemeral: bool = False

    @property
    def store(self) -> Path | None:
        """The embedded server's JetStream store (``None`` when ephemeral: its own temp dir)."""
        return None if self.ephemeral else self.path / "jetstream"

    @property
    def shown(self) -> str:
        """The path as a user would type it: relative to the current directory when under it."""
        with contextlib.suppress(ValueError):
            return f"./{self.path.relative_to(Path.cwd())}/"
        return str(self.path)

    @classmethod
    @contextlib.contextmanager
    def open(cls, *, ephemeral: bool = False) -> Iterator[StateDir]:
        """Create (or reuse) and lock the directory, and point ``$DIASPORA_STATE_DIR`` at it
        for the actors of this process and of its process nodes while the block runs."""
        if ephemeral:
            state = cls(Path(tempfile.mkdtemp(prefix="diaspora-state-")), ephemeral=True)
        else:
            state = cls(Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).resolve())
        before = os.environ.get(STATE_DIR_ENV)
        try:
            with state._locked():
                os.environ[STATE_DIR_ENV] = str(state.path)
                yield state
        finally:
            if before is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = before
            if ephemeral:
                shutil.rmtree(state.path, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = (self.path / "lock").open("a+")
        except OSError as exc:
            raise ConfigError(
                f"state directory {self.path}: cannot use it ({exc}); set ${STATE_DIR_ENV} "
                "to a writable directory, or run with --ephemeral"
            ) from exc
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "?"
                raise ConfigError(
                    f"state directory {self.path}: another diaspora run uses it (pid {holder}); "
                    f"stop that one, or give this one its own ${STATE_DIR_ENV}"
                ) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield
