"""Atomic file writes, published together: a stage interrupted or failing half-way never leaves a
half-written output, nor a mix of new and old outputs.

Every output goes through `atomic_path` or `atomic_dir`, which write into a temporary file or folder
beside the target. Alone, each moves into place as soon as it is written. Inside `publishing()`
(every stage command runs in one: command.run), they wait: when the command succeeds the whole set
is moved into place, and when it fails (or one of them cannot move) none is, so the outputs of the
last good run stay as they were, together.
"""

import errno
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VistageError

# errors that mean "this place cannot be written" (the user's to fix), not a bug in vistage
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
              errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EIO}


class PublishError(VistageError):
    """An output could not be written or moved into place; the earlier outputs are unchanged."""


def cannot_write(path: Path, exc: OSError) -> PublishError:
    return PublishError(f"cannot write {path}: {exc.strerror or exc}; the outputs of the last good run are unchanged")


@dataclass
class Publication:
    """Outputs written and waiting to be moved into place together: (temporary, target) pairs."""

    staged: list[tuple[Path, Path]] = field(default_factory=list)
    after: list = field(default_factory=list)  # what to do once published (clean up what led to it)

    def commit(self) -> None:
        """Move every staged output into place; if one cannot move, put back the ones that did."""
        moved: list[tuple[Path, Path, Path | None]] = []  # (temporary, target, the target's old content)
        for tmp, target in self.staged:
            try:
                old = _set_aside(target)
                moved.append((tmp, target, old))
                os.replace(tmp, target)
            except OSError as exc:
                _undo(moved)
                self.abort()  # the new outputs, back beside their targets, go
                raise cannot_write(target, exc) from None
        for _, _, old in moved:
            _remove(old)
        self.staged.clear()
        for then in self.after:
            then()

    def abort(self) -> None:
        for tmp, _ in self.staged:
            _remove(tmp)
        self.staged.clear()


_publication: ContextVar[Publication | None] = ContextVar("publication", default=None)


@contextmanager
def publishing():
    """Outputs written inside wait and are published together when the block succeeds; nested
    blocks join the outermost one."""
    if _publication.get() is not None:
        yield _publication.get()
        return
    publication = Publication()
    token = _publication.set(publication)
    failed = True
    try:
        yield publication
        failed = False
    except SystemExit as exit_:  # a command's normal end: Typer exits with the command's code
        failed = exit_.code not in (0, None)
        raise
    finally:
        _publication.reset(token)
        if failed:
            publication.abort()
        else:
            publication.commit()


def when_published(then) -> None:
    """Call `then` once the outputs written so far are published (now, outside a publication)."""
    publication = _publication.get()
    if publication is None:
        then()
    else:
        publication.after.append(then)


@contextmanager
def immediately():
    """Outputs written inside move into place at once, publication or not (what a rerun resumes
    from: train's checkpoints in progress)."""
    token = _publication.set(None)
    try:
        yield
    finally:
        _publication.reset(token)


def _set_aside(target: Path) -> Path | None:
    """Rename the target's current content (file or folder) beside it; None when there is none."""
    if not os.path.lexists(target):
        return None
    old = target.with_name(f".{target.name}.{os.getpid()}.old.tmp")
    _remove(old)
    os.replace(target, old)
    return old


def _undo(moved: list[tuple[Path, Path, Path | None]]) -> None:
    for tmp, target, old in reversed(moved):
        if os.path.lexists(target) and not os.path.lexists(tmp):
            os.replace(target, tmp)  # the new content back where it was written, for abort to remove
        if old is not None:
            os.replace(old, target)


def _remove(path: Path | None) -> None:
    if path is None or not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_writable(path: str | Path) -> None:
    """Fail now, in one line, if `path` could not be created later: a part of it that is a file, a
    folder that cannot be written (checked before a long run, so it does not fail at the end)."""
    path = Path(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise PublishError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PublishError(f"cannot write {path}: {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale(path: Path) -> None:
    """Remove what an interrupted writer of `path` left: `.NAME.PID.*.tmp` files and folders whose
    process is gone (a kill -9 gives no chance to clean up). A live writer's are left alone."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = leftover.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one
    rename, at once or, inside `publishing()`, with the rest of the stage's outputs."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
    try:
        with _writing(path, tmp):
            yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        _place(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_dir(path: str | Path):
    """Yield an empty temporary folder beside `path`; when the block succeeds it replaces `path`,
    at once or, inside `publishing()`, with the rest of the stage's outputs."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        with _writing(path, tmp):
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _place(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def _writing(path: Path, tmp: Path | None = None):
    """An OSError of writing `path` (its temporary `tmp`) as one line naming `path`; errors about
    other files (an input read inside the block) pass unchanged."""
    try:
        yield
    except OSError as exc:
        about = exc.filename is None or (tmp is not None and str(tmp) in str(exc.filename)) or \
            str(path) in str(exc.filename) or str(exc.filename) in str(path)
        if exc.errno in UNWRITABLE and about:
            raise cannot_write(path, exc) from None
        raise


def _place(tmp: Path, path: Path) -> None:
    """Move a finished output into place, or leave it to the publication under way."""
    publication = _publication.get()
    if publication is not None:
        for earlier in [t for t, target in publication.staged if target == path]:  # written twice: the last wins
            _remove(earlier)
        publication.staged = [(t, target) for t, target in publication.staged if target != path]
        publication.staged.append((tmp, path))
        return
    Publication([(tmp, path)]).commit()


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
