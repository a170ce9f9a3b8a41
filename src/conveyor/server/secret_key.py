"""The key of workspace secrets (DESIGN A9): Fernet, from ``cryptography``; never in the store.

``CONVEYOR_SECRET_KEY`` holds it (PostgreSQL deployments: each server and worker); without
it, an SQLite store's key is the file ``secret.key`` beside the store, made 0600 on first need.
Either may hold several keys (comma-separated, or one a line): the first encrypts and each
decrypts, so a key is rotated without a moment when a process cannot read the secrets
(``conveyor secret rotate-key``, docs/operations.md).

A key file is read at each use, not kept: a rotation that rewrites it reaches a running
``serve`` at once. Nothing here ever puts a key or a value in a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from conveyor.errors import SecretKeyError, StartupError
from conveyor.server.settings import sqlite_folder

if TYPE_CHECKING:
    from conveyor.server.store.base import Store

log = logging.getLogger("conveyor")

ENV_SECRET_KEY = "CONVEYOR_SECRET_KEY"
KEY_FILE = "secret.key"
_HOW = "make one with `conveyor secret keygen`"


def new_key() -> str:
    """A fresh Fernet key: 32 random bytes, url-safe base64."""
    return Fernet.generate_key().decode()


@dataclass(frozen=True, slots=True)
class SecretKey:
    """Where a process's secret key comes from; ``-v`` shows ``keys`` as ``***``."""

    #: ``CONVEYOR_SECRET_KEY``: keys, comma-separated; the first encrypts, each decrypts.
    keys: str | None = field(default=None, repr=False)
    #: Without ``keys``: the key file (beside an SQLite store); None: no key at all.
    file: Path | None = None

    @property
    def configured(self) -> bool:
        """A key is given, or there is a key file to read (or to make)."""
        return self.keys is not None or self.file is not None

    def check(self) -> None:
        """``SecretKeyError`` if the keys given, or the key file if it exists, are malformed."""
        if self.keys is not None or (self.file is not None and self.file.exists()):
            self._cipher(create=False)

    def encrypt(self, value: str) -> str:
        return self._cipher(create=True).encrypt(value.encode()).decode()

    def decrypt(self, name: str, ciphertext: str) -> str:
        """The value of secret ``name``; ``SecretKeyError`` when no key here opens it."""
        return self._open(name, ciphertext, MultiFernet.decrypt)

    def rotate(self, name: str, ciphertext: str) -> str:
        """``ciphertext`` encrypted again with the first key (any of the keys opens it)."""
        return self._open(name, ciphertext, MultiFernet.rotate)

    def write(self, keys: list[str]) -> None:
        """Replace the key file with ``keys`` (whole or not at all), 0600."""
        assert self.file is not None
        _write_new(self.file, "".join(key + "\n" for key in keys), replace=True)

    def texts(self, *, create: bool = False) -> list[str]:
        """The keys, first the one that encrypts; ``create``: make the key file if missing."""
        if self.keys is not None:
            return [key.strip() for key in self.keys.split(",") if key.strip()]
        if self.file is None:
            raise SecretKeyError(
                f"this process has no secret key: set {ENV_SECRET_KEY} on every server and "
                f"worker ({_HOW}; see docs/operations.md)"
            )
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            if not create:
                raise SecretKeyError(
                    f"the key file {self.file} is missing, so no secret of this store can be "
                    "read: restore it, or create the secrets again (docs/operations.md)"
                ) from None
            _write_new(self.file, new_key() + "\n", replace=False)
            text = self.file.read_text()
        except OSError as exc:
            raise SecretKeyError(f"cannot read the key file {self.file}: {exc.strerror}") from None
        return text.split()

    def _cipher(self, *, create: bool) -> MultiFernet:
        try:
            ciphers = [Fernet(text) for text in self.texts(create=create)]
        except ValueError:  # a wrong length, or not base64 (binascii.Error is a ValueError)
            ciphers = []
        if not ciphers:
            where = ENV_SECRET_KEY if self.keys is not None else f"the key file {self.file}"
            apart = "comma-separated" if self.keys is not None else "one a line"
            raise SecretKeyError(
                f"{where} does not hold Fernet keys (32 url-safe base64 bytes each, {apart}; "
                f"{_HOW})"
            )
        return MultiFernet(ciphers)

    def _open(
        self, name: str, ciphertext: str, how: Callable[[MultiFernet, bytes], bytes]
    ) -> str:
        cipher = self._cipher(create=False)
        try:
            return how(cipher, ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                f"the secret key cannot decrypt secret {name!r}: it was encrypted with another "
                "key; give this process that key, or create the secret again "
                "(docs/operations.md)"
            ) from None


def secret_key_of(store_url: str) -> SecretKey:
    """The key of a process on ``store_url``: ``CONVEYOR_SECRET_KEY`` if set, else (SQLite)
    the key file beside the store."""
    keys = os.environ.get(ENV_SECRET_KEY) or None
    if keys is not None or not store_url.startswith("sqlite:"):
        return SecretKey(keys=keys)
    return SecretKey(file=sqlite_folder(store_url) / KEY_FILE)


async def check_secret_key(store: Store, key: SecretKey) -> None:
    """At a process's start: a malformed key, or secrets in the store and no key, stop it; a
    key that does not open them is a warning (a secret created again opens with it)."""
    key.check()
    found = await store.any_secret()
    if found is None:
        return
    if not key.configured:
        raise StartupError(
            f"the store holds secrets and {ENV_SECRET_KEY} is not set: set it to the key they "
            "were encrypted with (see docs/operations.md)"
        )
    try:
        key.decrypt(*found)
    except SecretKeyError as exc:
        log.warning("%s", exc, extra={"action": "secret_key_mismatch"})


def _write_new(path: Path, text: str, *, replace: bool) -> None:
    """Write ``path`` 0600 through a temporary file, so no reader sees half of it. Not
    ``replace``: a file made meanwhile by another process wins (theirs is then the key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
