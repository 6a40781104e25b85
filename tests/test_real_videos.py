"""Exact frame indexing on real videos (see real_videos.py for where they come from): frame i
read alone, or among others, is bit for bit the i-th frame of a plain decode from the start."""
from __future__ import annotations

import numpy as np
import pytest
import real_videos

from smae.data.encoded import EncodedVideo, VideoError, frame_index
from smae.data.video import VideoSource, open_video

SAMPLES_IN_CI = ("carphone_pristine.mp4", "carphone_distorted.mp4")


@pytest.fixture(scope="session")
def samples():
    try:
        return real_videos.sample_videos()
    except real_videos.Unavailable as error:
        pytest.skip(f"real sample videos unavailable: {error}")


def _case(samples, name):
    return samples[name] if name in samples else real_videos.hard_case(name)


def _assert_every_index_exact(path, stride=1):
    truth = real_videos.sequential_decode(path)
    reader = open_video(VideoSource(str(path), False))
    try:
        assert reader.num_frames == len(truth)
        for index in range(0, len(truth), stride):  # one at a time: a seek for each
            np.testing.assert_array_equal(reader.read([index])[index], truth[index], err_msg=f"{path} frame {index}")
        rng = np.random.default_rng(0)
        for _ in range(10):  # pairs and groups, as the pair sampler asks
            wanted = rng.choice(len(truth), size=int(rng.integers(2, 6)), replace=False).tolist()
            got = reader.read(wanted)
            assert sorted(got) == sorted(wanted)
            for index in wanted:
                np.testing.assert_array_equal(got[index], truth[index], err_msg=f"{path} frame {index} of {wanted}")
    finally:
        reader.close()


@pytest.mark.parametrize("name", list(real_videos.HARD_CASES) + list(SAMPLES_IN_CI))
def test_every_index_equals_a_sequential_decode(samples, name):
    _assert_every_index_exact(_case(samples, name))


def test_every_4th_index_of_a_film_with_six_key_frames(samples):
    _assert_every_index_exact(samples["bikes.mp4"], stride=4)  # 250 frames of 640x272


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4"])  # bigbuckbunny: 132 1280x720 frames, 1 key frame
def test_every_index_of_the_larger_samples(samples, name):
    _assert_every_index_exact(samples[name])


@pytest.mark.parametrize("name", ["bikes.mp4", "open_gop.mp4", "vfr_jitter.mp4", "mpeg4_bframes.avi"])
def test_a_read_decodes_from_the_key_frame_before_not_from_the_start(samples, name):
    """Exact by seeking, not by falling back to a full decode: frame i costs the frames from the
    key frame before it (or from the start, where none is before it), plus the B-frames a decoder
    holds back and the frames an edit list hides (at most 4 here)."""
    path = _case(samples, name)
    keys = np.flatnonzero(frame_index(str(path)).key)
    for index in range(0, EncodedVideo(str(path)).num_frames, 5):
        reader = EncodedVideo(str(path))
        reader.read([index])
        key_before = keys[keys <= index].max(initial=0)
        assert reader.decoded_frames <= index - key_before + 1 + 4, (index, key_before)
        reader.close()


def test_a_frame_unlike_the_first_decode_is_never_returned(samples):
    """The pixel CRC of the first decode guards every read (e.g. a seek that lands on a frame that
    is flagged key but is not a clean start); here the file 'changed' under a kept index."""
    path = real_videos.hard_case("open_gop.mp4")
    reader = EncodedVideo(str(path))
    reader.index.crc[20] ^= 1
    try:
        with pytest.raises(VideoError, match="frame 20 of 60 decoded differently"):
            reader.read([18, 20])
    finally:
        reader.index.crc[20] ^= 1
    assert reader.read([20])


def test_frame_counts_come_from_the_decode_not_the_container(samples):
    import av

    for name in ("editlist_cut.mp4", "mjpeg_dropped.avi", "vp9.webm"):
        path = real_videos.hard_case(name)
        with av.open(str(path)) as container:
            listed = container.streams.video[0].frames
        assert EncodedVideo(str(path)).num_frames == len(real_videos.sequential_decode(path)) != listed


def test_rotation_flag_turns_frames_upright(samples):
    """rotated.mp4 is unrotated.mp4's H.264 stream under a 'rotate 90 clockwise' track matrix."""
    rotated = real_videos.hard_case("rotated.mp4")
    plain = real_videos.sequential_decode(real_videos.unrotated_twin(rotated))
    reader = EncodedVideo(str(rotated))
    assert frame_index(str(rotated)).rotation == 270  # counter-clockwise degrees
    frames = reader.read(list(range(reader.num_frames)))
    width, height = real_videos.HARD_SIZE
    for index, frame in frames.items():
        assert frame.shape == (width, height, 3)
        np.testing.assert_array_equal(frame, np.rot90(plain[index], k=-1))  # clockwise
