"""The development key-encryption key: 32 random bytes in a file only its owner may read.

``LocalKeyFile`` is a :class:`kernel.sealing.KeyWrapper`: patients' data keys are wrapped with
AES-256-GCM under the file's key. The file is made when missing (``careknot up`` makes it at
start), atomically, so two processes starting at once end with one key; a file that others may
read, or that is not 32 bytes, is refused. In production a KMS stands behind the same interface.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from kernel.errors import ConfigError
from kernel.sealing import KEY_BYTES, Unsealable, key_id_of, unwrap_with, wrap_with
from kernel.settings import Settings

log = logging.getLogger(__name__)


def write_key_file(path: Path) -> bool:
    """A fresh key at ``path`` unless one is there (mode 0600); whether it was made now."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kek-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails when another process made it first: theirs stands
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    log.warning("made a new key-encryption key for patients' data in %s", path)
    return True


def read_key_file(path: Path) -> bytes:
    """The key in ``path``; :class:`ConfigError` when it is missing, readable by others than
    its owner, or not :data:`KEY_BYTES` long."""
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"key-encryption key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key-encryption key file {path}: others may read it (chmod 600)")
    if len(key) != KEY_BYTES:
        raise ConfigError(f"key-encryption key file {path}: not {KEY_BYTES} bytes")
    return key


class LocalKeyFile:
    """A :class:`kernel.sealing.KeyWrapper` whose key is a local file's (made if missing)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if create:
            write_key_file(path)
        self._key = read_key_file(path)
        self._id = key_id_of(self._key)

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, context: str) -> bytes:
        return wrap_with(self._key, self._id, data_key, context)

    def unwrap(self, wrapped: bytes, kek_id: str, context: str) -> bytes:
        if kek_id != self._id:
            raise Unsealable(f"wrapped by key-encryption key {kek_id}; this one is {self._id}")
        return unwrap_with(self._key, self._id, wrapped, context)


def with_patient_kek(settings: Settings) -> Settings:
    """Settings naming the key-encryption key file by its absolute path (so every child
    process finds the same one, whatever its directory), the file made when missing."""
    path = Path(settings.patient_kek_file).resolve()
    write_key_file(path)
    read_key_file(path)  # refused now, not in a child, when others may read it
    return settings.model_copy(update={"patient_kek_file": str(path)})
