"""Face toolkit on real frames: dlib models, detection, landmarks, steady crops, pose, embeddings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facevid2vid import geometry
from facevid2vid.errors import FaceVid2VidError, InputError, NoFaceError
from facevid2vid.face import dlib_models
from facevid2vid.face.crop import CropBox, crop_frames, prepare_frames, steady_crop_box
from facevid2vid.face.detect import box_area, detect_faces
from facevid2vid.face.embedding import embedding_distance, face_embedding
from facevid2vid.face.landmarks import landmarks_68
from facevid2vid.face.pose import HeadPoseEstimator, MODEL_INDICES, angles_from_matrix, project_model
from facevid2vid.face.track import track_frames
from facevid2vid.video_io import read_image, read_video


@pytest.fixture(scope="module")
def franck(samples):
    frames, _ = read_video(samples.franck, max_frames=60)
    return frames[::2]  # (30, 288, 360, 3)


@pytest.fixture(scope="module")
def blank():
    return np.full((120, 160, 3), 128, np.uint8)


def test_model_files_found_and_loaded_once():
    for name in dlib_models.MODEL_FILES:
        assert dlib_models.model_path(name).is_file()
    assert dlib_models.shape_predictor() is dlib_models.shape_predictor()
    with pytest.raises(FaceVid2VidError, match="dlib model nope.dat not found"):
        dlib_models.model_path("nope.dat")


def test_detection(samples, franck, blank):
    car, _ = read_video(samples.carphone, max_frames=1)
    assert len(detect_faces(car[0])) == 1  # 176x144: found through the automatic upsampling
    assert detect_faces(car[0], upsample=0) == []
    assert detect_faces(blank) == []
    # two faces of different sizes side by side: largest first
    small = franck[0][::2, ::2]
    pair = np.zeros((288, 360 + 180, 3), np.uint8)
    pair[:, :360] = franck[0]
    pair[:144, 360:] = small
    boxes = detect_faces(pair, upsample=1)
    assert len(boxes) == 2 and box_area(boxes[0]) > 2 * box_area(boxes[1])
    assert boxes[0][2] <= 360 < boxes[1][0]
    with pytest.raises(InputError, match="uint8"):
        detect_faces(franck[0].astype(np.float32))


def test_landmarks(franck, blank):
    lm = landmarks_68(franck[0])
    x0, y0, x1, y1 = detect_faces(franck[0])[0]
    assert lm.shape == (68, 2)
    assert x0 - 10 < lm[:, 0].min() and lm[:, 0].max() < x1 + 10 and lm[:, 1].max() < y1 + 20
    assert lm[36, 0] < lm[30, 0] < lm[45, 0] and lm[27, 1] < lm[30, 1] < lm[51, 1] < lm[8, 1]
    assert landmarks_68(blank) is None


def test_steady_crop_contains_face_in_every_frame(franck):
    track = track_frames(franck, every=5)
    assert track.boxes.shape == (30, 4) and track.present.all()
    out, box = prepare_frames(franck, 128, name="franck")
    assert isinstance(box, CropBox) and out.shape == (30, 128, 128, 3) and out.dtype == np.uint8
    assert steady_crop_box(franck, name="franck") == box  # deterministic: one box per clip
    for f in franck[::5]:
        lm = landmarks_68(f)
        assert box.contains(lm)
        # the face fills a sensible part of the crop
        span = np.ptp(box.to_crop(lm, 128)[:, 0])
        assert 0.3 * 128 < span < 0.75 * 128
    # same content as slicing the box out and resizing (it lies partly outside: padded)
    ref = crop_frames(franck[:1], box, box.size)
    y0, x0 = max(box.y0, 0), max(box.x0, 0)
    inside = franck[0][y0:box.y1, x0:box.x1]
    np.testing.assert_array_equal(ref[0, y0 - box.y0:y0 - box.y0 + inside.shape[0],
                                      x0 - box.x0:x0 - box.x0 + inside.shape[1]], inside)


def test_crop_padding_and_no_face(franck, blank):
    box = CropBox(-20, -10, 60)
    black = crop_frames(franck[:1], box, 60, pad="black")
    assert black[0, :10].max() == 0 and black[0, :, :20].max() == 0
    np.testing.assert_array_equal(black[0, 10:, 20:], franck[0][:50, :40])
    edge = crop_frames(franck[:1], box, 60, pad="edge")
    np.testing.assert_array_equal(edge[0, 0, 20:], franck[0][0, :40])
    with pytest.raises(NoFaceError, match="no face found in blank.mp4"):
        prepare_frames(np.stack([blank] * 3), 64, name="blank.mp4")
    full, none = prepare_frames(franck[:2], 64, crop=False)
    assert full.shape == (2, 64, 64, 3) and none is None


def test_pose_recovers_known_rotations():
    """Synthetic views of the model rotated with geometry.rotation_from_angles: checks signs end to end."""
    est = HeadPoseEstimator()
    for yaw, pitch, roll in [(20, 0, 0), (-20, 0, 0), (0, 15, 0), (0, -15, 0), (0, 0, 12), (25, -10, 8), (-30, 12, -6)]:
        rot = geometry.rotation_from_angles(torch.tensor([float(yaw)]), torch.tensor([float(pitch)]),
                                            torch.tensor([float(roll)]))[0].double().numpy()
        pix = project_model(rot, (256, 256), distance=600.0)
        lm = np.zeros((68, 2))
        lm[MODEL_INDICES] = pix
        got = est.from_landmarks(lm, (256, 256))
        np.testing.assert_allclose(got, (yaw, pitch, roll), atol=2.0)
    # positive yaw sends the nose toward image-left
    nose, eye_r, eye_l = (list(MODEL_INDICES).index(i) for i in (30, 36, 45))
    rot = geometry.rotation_from_angles(torch.tensor([20.0]), torch.tensor([0.0]), torch.tensor([0.0]))[0]
    pix = project_model(rot.double().numpy())
    assert pix[nose, 0] < (pix[eye_r, 0] + pix[eye_l, 0]) / 2 - 5


def test_numpy_angles_match_geometry():
    g = torch.Generator().manual_seed(0)
    yaw, pitch, roll = (torch.rand(8, generator=g) * 160 - 80).double(), (torch.rand(8, generator=g) * 120 - 60).double(), \
        (torch.rand(8, generator=g) * 120 - 60).double()
    rots = geometry.rotation_from_angles(yaw, pitch, roll)
    for i in range(8):
        np.testing.assert_allclose(angles_from_matrix(rots[i].numpy()), (yaw[i], pitch[i], roll[i]), atol=1e-6)


def test_pose_on_real_faces(franck, samples):
    est = HeadPoseEstimator()
    yaw, pitch, roll = est(franck[0])
    myaw, mpitch, mroll = est(np.ascontiguousarray(franck[0][:, ::-1]))
    assert abs(yaw) > 2 and np.sign(myaw) == -np.sign(yaw) and abs(yaw + myaw) < 3
    assert np.sign(mroll) == -np.sign(roll) and abs(pitch - mpitch) < 3
    # photos of people facing the camera come out near the rest pose
    names = ["obama4_crop.jpg", "fragrance-George-Clooney-main_crop.jpg", "chuck_crop.jpg", "terminator_crop.jpg"]
    poses = np.array([est(read_image(p)) for p in samples.stills if p.name in names])
    assert poses.shape == (4, 3) and np.abs(poses).max() < 10


def test_embeddings(samples, franck, blank):
    later, _ = read_video(samples.franck, start=3000, max_frames=1)
    other, _ = read_video(samples.cap12, max_frames=1)
    a, b, c = face_embedding(franck[0]), face_embedding(later[0]), face_embedding(other[0])
    assert a.shape == (128,)
    assert embedding_distance(a, b) < 0.5 < embedding_distance(a, c)
    assert embedding_distance(a, b) < embedding_distance(a, c)
    via68 = face_embedding(franck[0], landmarks=landmarks_68(franck[0]))
    assert embedding_distance(a, via68) < 0.3
    assert face_embedding(blank) is None


def test_fit_inside_keeps_photo_crops_inside_the_picture():
    from facevid2vid.face.crop import CropBox, fit_inside

    inside = CropBox(10, 20, 50)
    assert fit_inside(inside, 200, 200, 30) == inside  # already inside: unchanged
    moved = fit_inside(CropBox(-15, 170, 50), 200, 200, 30)  # shifted back in, same size
    assert moved == CropBox(0, 150, 50)
    tight = fit_inside(CropBox(-40, -60, 260), 180, 220, 190)  # too big: shrinks, but not below min_side
    assert tight.size == 190 and tight.x0 == -5 and 0 <= tight.y0 <= 220 - 190
