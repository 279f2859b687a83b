"""The envelope of patients' sealed fields (``kernel.sealing``) and the development key file
(``adapters.key_file``): a round trip, tampering and the wrong key or patient refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.key_file import LocalKeyFile, read_key_file, write_key_file
from kernel import sealing
from kernel.errors import ConfigError
from kernel.sealing import Unsealable


def test_a_sealed_name_opens_with_its_key_for_its_patient_and_field() -> None:
    key = sealing.new_data_key()
    sealed = sealing.seal(key, "p1", "name", "Edith Crésswell")
    assert b"Edith" not in sealed
    assert sealing.unseal(key, "p1", "name", sealed) == "Edith Crésswell"
    assert sealing.seal(key, "p1", "name", "Edith") != sealing.seal(key, "p1", "name", "Edith")


@pytest.mark.parametrize("at", [0, 1, 13, -1])
def test_a_changed_byte_is_detected(at: int) -> None:
    key = sealing.new_data_key()
    sealed = bytearray(sealing.seal(key, "p1", "name", "Edith"))
    sealed[at] ^= 0x01
    with pytest.raises(Unsealable):
        sealing.unseal(key, "p1", "name", bytes(sealed))
    with pytest.raises(Unsealable):
        sealing.unseal(key, "p1", "name", bytes(sealed[:20]))


def test_the_wrong_key_patient_or_field_is_refused() -> None:
    key = sealing.new_data_key()
    sealed = sealing.seal(key, "p1", "name", "Edith")
    with pytest.raises(Unsealable):
        sealing.unseal(sealing.new_data_key(), "p1", "name", sealed)
    with pytest.raises(Unsealable):
        sealing.unseal(key, "p2", "name", sealed)  # another patient's row, same key
    with pytest.raises(Unsealable):
        sealing.unseal(key, "p1", "note", sealed)


def test_a_wrapped_key_unwraps_only_with_its_kek_for_its_patient(tmp_path: Path) -> None:
    kek, other = LocalKeyFile(tmp_path / "kek"), LocalKeyFile(tmp_path / "other")
    data_key = sealing.new_data_key()
    wrapped = kek.wrap(data_key, "p1")
    assert data_key not in wrapped
    assert kek.unwrap(wrapped, kek.kek_id, "p1") == data_key
    assert kek.kek_id != other.kek_id
    with pytest.raises(Unsealable, match="key-encryption key"):
        other.unwrap(wrapped, kek.kek_id, "p1")
    with pytest.raises(Unsealable):
        kek.unwrap(wrapped, kek.kek_id, "p2")
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(Unsealable):
        kek.unwrap(tampered, kek.kek_id, "p1")


def test_the_key_file_is_made_once_owner_only_and_refused_when_others_may_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "patient-kek"
    assert write_key_file(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    key = read_key_file(path)
    assert len(key) == sealing.KEY_BYTES
    assert not write_key_file(path)  # kept
    assert read_key_file(path) == key
    assert LocalKeyFile(path).kek_id == LocalKeyFile(path).kek_id
    assert [p.name for p in path.parent.iterdir()] == ["patient-kek"]  # no temporary left
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="others may read"):
        read_key_file(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        read_key_file(path)
    with pytest.raises(ConfigError):
        LocalKeyFile(tmp_path / "missing", create=False)


def test_the_blind_index_matches_a_name_however_written_and_needs_its_key() -> None:
    index_key, other_key = os.urandom(32), os.urandom(32)
    one = sealing.blind_index(index_key, "Edith  Crésswell")
    assert one == sealing.blind_index(index_key, " edith CRÉSSWELL ")
    assert one != sealing.blind_index(index_key, "Edith Cresswell")
    assert one != sealing.blind_index(other_key, "Edith  Crésswell")
    assert len(one) == 32
