"""Video files through PyAV: H.264 mp4 writing, exact frame access and uniform sampling.

This is the one reader the rest of r4d uses. Frame k of a video is the k-th frame in
presentation order and is shown at time k / fps (constant frame rate). A frame's index is
computed from its presentation timestamp, so seeking lands on exactly the frame asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from r4d.errors import InputError
from r4d.io.atomic import atomic_path

SEEK_AHEAD_FRAMES = 48  # seek instead of decoding on when the next wanted frame is this far


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds covered by the frames: num_frames / fps."""
        return self.num_frames / self.fps


def uniform_indices(num_frames: int, n: int) -> np.ndarray:
    """n frame indices spread evenly over [0, num_frames - 1], first and last included,
    rounded to the nearest frame (repeats when n > num_frames)."""
    if num_frames < 1 or n < 1:
        raise ValueError(f"need num_frames >= 1 and n >= 1, got {num_frames}, {n}")
    return np.round(np.linspace(0, num_frames - 1, n)).astype(np.int64)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    preset: str = "veryfast",
) -> int:
    """Encode RGB uint8 frames (H, W, 3), or batches (n, H, W, 3), to an H.264 mp4 at `fps`.

    Written atomically; returns the number of frames. Width and height must be even (yuv420p).
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            for batch in frames:
                batch = np.asarray(batch)
                for image in batch if batch.ndim == 4 else batch[None]:
                    if count == 0:
                        height, width = image.shape[:2]
                        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                            raise InputError(
                                f"frames must be uint8 (H, W, 3), got {image.dtype} {image.shape}",
                                where=path,
                            )
                        if height % 2 or width % 2:
                            raise InputError(
                                f"H.264 needs even sizes, got {width}x{height}", where=path
                            )
                        stream.width, stream.height = width, height
                    elif image.shape[:2] != (height, width):
                        raise InputError(
                            f"frame {count} is {image.shape[1]}x{image.shape[0]}, "
                            f"the video {width}x{height}",
                            where=path,
                        )
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    frame.pts = count
                    frame.time_base = 1 / rate
                    container.mux(stream.encode(frame))
                    count += 1
            if count == 0:
                raise InputError("no frames to write", where=path)
            container.mux(stream.encode(None))
    return count


def _open(path: Path):
    if not path.is_file():
        raise InputError("no such video file", where=path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise InputError(f"unreadable video ({err})", where=path) from None
    if not container.streams.video:
        container.close()
        raise InputError("no video stream", where=path)
    return container


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and size of a video (frames counted from packets if the
    container does not say)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise InputError("the video stream has no frame rate", where=path)
        count = stream.frames
        if not count:
            try:
                count = sum(1 for p in container.demux(stream) if p.size)
            except av.FFmpegError as err:
                raise InputError(f"unreadable video ({err})", where=path) from None
        if not count:
            raise InputError("the video has no frames", where=path)
        return VideoInfo(path, float(rate), int(count), stream.width, stream.height)


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode exactly the frames `indices` (any order, repeats allowed): (n, H, W, 3) uint8."""
    path = Path(path)
    info = probe(path)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    bad = indices[(indices < 0) | (indices >= info.num_frames)]
    if len(bad):
        raise InputError(f"frame {int(bad[0])} out of range [0, {info.num_frames})", where=path)
    wanted = sorted(set(indices.tolist()))
    got: dict[int, np.ndarray] = {}
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb, rate = stream.time_base, Fraction(info.fps).limit_denominator(1001)
        start = stream.start_time or 0
        try:
            position = -1
            frames = container.decode(stream)
            for target in wanted:
                if target - position > SEEK_AHEAD_FRAMES:
                    container.seek(start + int(target / rate / tb), stream=stream, backward=True)
                    frames = container.decode(stream)
                for frame in frames:
                    position = round((frame.pts - start) * tb * rate)
                    if position >= target:
                        break
                else:
                    break
                if position != target:
                    raise InputError(
                        f"frame {target} is missing (decoder went from {position})", where=path
                    )
                got[target] = frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise InputError(f"unreadable video ({err})", where=path) from None
    missing = [i for i in wanted if i not in got]
    if missing:
        raise InputError(
            f"the video ends before frame {missing[0]} (header says {info.num_frames} frames)",
            where=path,
        )
    return np.stack([got[i] for i in indices.tolist()])


def sample_uniform(path: str | Path, n: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n uniformly sampled frames: (frames (n, H, W, 3) uint8, timestamps (n,) s, indices (n,))."""
    info = probe(path)
    indices = uniform_indices(info.num_frames, n)
    return read_frames(path, indices), indices / info.fps, indices
