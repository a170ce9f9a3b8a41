"""The key of workspace secrets (DESIGN A9): a key file made 0600 once, however many processes
want it at the same moment; ``CONVEYOR_SECRET_KEY`` before it; every failure a
``SecretKeyError`` that says what to do and never shows a key or a value."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from conveyor.errors import SecretKeyError
from conveyor.server.secret_key import ENV_SECRET_KEY, KEY_FILE, SecretKey, new_key, secret_key_of

VALUE = "s3cr3t-value-\N{SNOWMAN}"


def test_the_key_file_is_made_0600_on_first_need_and_then_kept(tmp_path: Path) -> None:
    key = SecretKey(file=tmp_path / "store" / KEY_FILE)
    key.check()  # no file yet: nothing to check, nothing made
    assert not key.file.exists()  # type: ignore[union-attr]
    with pytest.raises(SecretKeyError, match="is missing"):
        key.decrypt("S3_KEY", "x")
    token = key.encrypt(VALUE)
    assert VALUE not in token and key.file is not None
    assert stat.S_IMODE(key.file.stat().st_mode) == 0o600
    assert key.decrypt("S3_KEY", token) == VALUE
    first = key.file.read_text()
    key.encrypt("again")
    assert key.file.read_text() == first
    assert sorted(p.name for p in key.file.parent.iterdir()) == [KEY_FILE]  # no leftovers


def test_processes_making_the_key_file_together_agree_on_one_key(tmp_path: Path) -> None:
    keys = [SecretKey(file=tmp_path / KEY_FILE) for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(lambda key: key.encrypt(VALUE), keys))
    for token in tokens:
        assert keys[0].decrypt("S3_KEY", token) == VALUE


def test_another_key_cannot_decrypt_and_says_which_secret(tmp_path: Path) -> None:
    token = SecretKey(keys=new_key()).encrypt(VALUE)
    with pytest.raises(SecretKeyError, match="cannot decrypt secret 'S3_KEY'") as caught:
        SecretKey(keys=new_key()).decrypt("S3_KEY", token)
    assert VALUE not in str(caught.value)


@pytest.mark.parametrize("given", ["not-a-key", "", "  ,  ", new_key()[:-4]])
def test_a_malformed_key_is_refused_without_showing_it(given: str) -> None:
    key = SecretKey(keys=given)
    with pytest.raises(SecretKeyError, match="does not hold Fernet keys") as caught:
        key.check()
    if given.strip(", "):
        assert given not in str(caught.value)
    with pytest.raises(SecretKeyError):
        key.encrypt(VALUE)


def test_no_key_at_all_says_to_set_the_variable() -> None:
    key = SecretKey()
    assert not key.configured
    key.check()
    with pytest.raises(SecretKeyError, match=f"set {ENV_SECRET_KEY}"):
        key.encrypt(VALUE)


def test_several_keys_the_first_encrypts_each_decrypts() -> None:
    old, new = new_key(), new_key()
    by_old = SecretKey(keys=old).encrypt(VALUE)
    both = SecretKey(keys=f"{new}, {old}")
    assert both.decrypt("X", by_old) == VALUE
    rotated = both.rotate("X", by_old)
    assert SecretKey(keys=new).decrypt("X", rotated) == VALUE
    assert Fernet(new).decrypt(both.encrypt(VALUE)).decode() == VALUE
    with pytest.raises(SecretKeyError, match="cannot decrypt secret 'X'"):
        SecretKey(keys=old).decrypt("X", rotated)


def test_the_variable_before_the_key_file_and_no_file_for_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_SECRET_KEY, raising=False)
    sqlite = f"sqlite:///{tmp_path}/c.db"
    assert secret_key_of(sqlite) == SecretKey(file=tmp_path / KEY_FILE)
    assert secret_key_of("postgresql://db/c") == SecretKey()
    key = new_key()
    monkeypatch.setenv(ENV_SECRET_KEY, key)
    assert secret_key_of(sqlite) == SecretKey(keys=key)
    assert secret_key_of("postgresql://db/c") == SecretKey(keys=key)
    assert key not in repr(SecretKey(keys=key))
