"""common.data_io.file_hash: a known SHA-256 prefix."""

from common.data_io import file_hash


def test_file_hash_known_value(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    assert file_hash(path) == "ba7816bf8f01cfea"  # sha256("abc")
