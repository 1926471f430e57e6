"""Locate and load dlib's pretrained face models once per process.

The model files ship in the pip package ``face_recognition_models``. Its ``__init__``
imports ``pkg_resources`` (gone from new setuptools), so the package is never
imported: its folder is found with ``importlib.util.find_spec``.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import dlib

from facevid2vid.errors import FaceVid2VidError

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
FACE_ENCODER = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
MODEL_FILES = (LANDMARKS_68, LANDMARKS_5, FACE_ENCODER, CNN_DETECTOR)
# set to a folder holding the .dat files to use other copies (e.g. Debian's libdlib-data)
ENV_DIR = "FACEVID2VID_DLIB_MODELS"


class ModelFileError(FaceVid2VidError):
    """A dlib model file cannot be found or loaded."""


@lru_cache(maxsize=1)
def models_dir() -> Path | None:
    """The ``models/`` folder of the installed face_recognition_models package, if any."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "models"


def model_path(name: str) -> Path:
    """Path of one dlib model file (``$FACEVID2VID_DLIB_MODELS`` first, then the package)."""
    folders = []
    if os.environ.get(ENV_DIR):
        folders.append(Path(os.environ[ENV_DIR]))
    if models_dir() is not None:
        folders.append(models_dir())
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    where = ", ".join(str(f) for f in folders) or "no face_recognition_models package installed"
    raise ModelFileError(f"dlib model {name} not found ({where}); "
                         f"install it with: pip install face-recognition-models==0.3.0")


def _load(kind, name: str):
    path = model_path(name)
    try:
        return kind(str(path))
    except RuntimeError as exc:
        raise ModelFileError(f"cannot load dlib model {path}: {str(exc).strip().splitlines()[0]}") from None


@lru_cache(maxsize=1)
def face_detector():
    """dlib's HOG + linear SVM frontal face detector (built in, fast on CPU)."""
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def cnn_face_detector():
    """dlib's MMOD CNN face detector (slower on CPU, more robust to pose)."""
    return _load(dlib.cnn_face_detection_model_v1, CNN_DETECTOR)


@lru_cache(maxsize=1)
def shape_predictor():
    """The 68-point landmark predictor (iBUG 300-W layout)."""
    return _load(dlib.shape_predictor, LANDMARKS_68)


@lru_cache(maxsize=1)
def shape_predictor_5():
    """The 5-point predictor (eye corners, nose), used to align faces for embeddings."""
    return _load(dlib.shape_predictor, LANDMARKS_5)


@lru_cache(maxsize=1)
def face_encoder():
    """dlib's ResNet face recognition model: 128-D descriptors."""
    return _load(dlib.face_recognition_model_v1, FACE_ENCODER)
