"""Video writing and exact frame access through PyAV, and bad video files."""

from __future__ import annotations

import numpy as np
import pytest

from r4d.errors import InputError
from r4d.io.video import probe, read_frames, sample_uniform, uniform_indices, write_video

BITS, SIZE = 9, 96


def numbered_frame(i: int) -> np.ndarray:
    """A frame whose index is written in wide black/white stripes (survives compression)."""
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    for b in range(BITS):
        frame[:, b * 10 : (b + 1) * 10] = 255 * ((i >> b) & 1)
    return frame


def frame_number(frame: np.ndarray) -> int:
    return sum(int(frame[SIZE // 2, b * 10 + 5, 0] > 127) << b for b in range(BITS))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "numbered.mp4"
    batches = (np.stack([numbered_frame(i) for i in range(a, a + 50)]) for a in range(0, 400, 50))
    assert write_video(path, batches, fps=24) == 400
    return path


def test_probe(video):
    info = probe(video)
    assert (info.fps, info.num_frames, info.width, info.height) == (24.0, 400, SIZE, SIZE)
    assert info.duration == pytest.approx(400 / 24)


def test_exact_frames_in_any_order_with_seeks(video):
    wanted = [399, 0, 7, 250, 251, 100, 399, 3, 320, 1]
    frames = read_frames(video, wanted)
    assert frames.shape == (len(wanted), SIZE, SIZE, 3)
    assert [frame_number(f) for f in frames] == wanted


def test_uniform_sampling(video):
    frames, timestamps, indices = sample_uniform(video, 16)
    assert indices[0] == 0 and indices[-1] == 399 and len(indices) == 16
    assert np.all(np.diff(indices) > 0)
    assert np.allclose(timestamps, indices / 24)
    assert [frame_number(f) for f in frames] == indices.tolist()


def test_uniform_indices():
    assert uniform_indices(5, 3).tolist() == [0, 2, 4]
    assert uniform_indices(100, 16)[[0, -1]].tolist() == [0, 99]
    assert uniform_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError):
        uniform_indices(0, 4)


def test_truncated_and_garbage_files_name_the_file(video, tmp_path):
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        read_frames(cut, [0, 399])
    assert info.value.where == str(cut)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 this is not a video" * 100)
    with pytest.raises(InputError, match=r"garbage\.mp4: unreadable video"):
        probe(garbage)
    with pytest.raises(InputError, match="no such video file"):
        probe(tmp_path / "absent.mp4")
    with pytest.raises(InputError, match="out of range"):
        read_frames(video, [400])


def test_truncated_mdat_with_header_up_front(video, tmp_path):
    """A file whose index survives but whose frames are cut off reports the missing frames."""
    import av

    fast = tmp_path / "faststart.mp4"
    with (
        av.open(str(video)) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut_fast.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError) as info:
        read_frames(cut, [0, 200, 399])
    assert info.value.where == str(cut)


def test_bad_frames_write_nothing(tmp_path):
    odd = tmp_path / "odd.mp4"
    with pytest.raises(InputError, match="even sizes"):
        write_video(odd, [np.zeros((33, 32, 3), np.uint8)], fps=10)
    mixed = tmp_path / "mixed.mp4"
    with pytest.raises(InputError, match="frame 1 is"):
        write_video(mixed, [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)], 10)
    assert list(tmp_path.iterdir()) == []
