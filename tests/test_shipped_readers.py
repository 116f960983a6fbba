"""The two readers shipped beside the shipped model: both installed, both read real clips of
words and phrases at their own length, their outputs pinned."""

from __future__ import annotations

import pytest
import torch

from text2sign.evaluation.readers import ARCHS, load_reader, shipped_reader_folders

pytestmark = pytest.mark.usefixtures("one_thread")


def test_both_shipped_readers_are_installed_and_read_the_same_units():
    folders = shipped_reader_folders()
    assert list(folders) == list(ARCHS)  # conv-gru, transformer
    readers = [load_reader(f) for f in folders.values()]
    for reader in readers:
        assert reader.config.frames is None and reader.units == "chars"
        assert reader.vocab == [" ", *"abcdefghijklmnopqrstuvwxyz"]
    assert readers[1].config.size == 64 and readers[0].config.size == 32


@pytest.mark.numerics
def test_shipped_readers_read_words_and_phrases_at_their_own_length(tmp_path):
    """Real clips at 6.25 fps, each its own length, word boundaries included ("across" is held
    out of their training)."""
    from text2sign.data.dataset import open_clips
    from text2sign.data.fingerspelling import build_fingerspelling_corpus
    from text2sign.evaluation.sequence import read_clips

    words = ["hello", "thank you", "across", "good morning", "information"]
    build_fingerspelling_corpus(tmp_path, words=words, letters=False, fps=6.25, size=128,
                                progress=False)
    cache = open_clips(tmp_path, 80, 128, "fps", progress=False, fps=6.25)
    assert dict(zip(cache.texts, cache.lengths, strict=True))["thank you"] == 37
    for arch, folder in shipped_reader_folders().items():
        reader = load_reader(folder)
        readings = dict(zip(cache.texts, read_clips(reader, cache, list(range(len(cache)))),
                            strict=True))
        # Measured: conv-gru reads all 5; the transformer all but "across" ("acros").
        assert sum(readings[w] == w for w in words) >= 4, (arch, readings)


# Log-probabilities on two seeded uint8 noise clips of 40 frames at 48 x 48: one CTC step a
# frame; the first two steps' first six units of clip 0, the last step's last four of clip 1.
PINNED = {
    "conv-gru": (
        [[-2.538511, -3.837536, -8.958303, -8.456551, -11.363928, -7.909644],
         [-0.354904, -4.253813, -10.572680, -8.666476, -11.738702, -9.042665]],
        [-5.457932, -3.371832, -4.760165, -6.225240],
    ),
    "transformer": (
        [[-0.005036, -11.467196, -9.518856, -8.559072, -7.495170, -10.241431],
         [-0.024961, -8.387037, -9.471488, -10.914885, -10.694214, -10.054281]],
        [-5.652039, -8.599865, -6.370149, -9.077159],
    ),
}


@pytest.mark.numerics
@pytest.mark.parametrize("arch", list(PINNED))
def test_shipped_reader_outputs_pinned(arch):
    reader = load_reader(shipped_reader_folders()[arch])
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 40, 48, 48, 3), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        log_probs = reader.net(reader.prepare(clips))  # (2, 40, 28)
    assert log_probs.shape == (2, 40, 28)
    first, last = PINNED[arch]
    torch.testing.assert_close(log_probs[0, :2, :6], torch.tensor(first), atol=1e-4, rtol=0)
    torch.testing.assert_close(log_probs[1, -1, -4:], torch.tensor(last), atol=1e-4, rtol=0)
