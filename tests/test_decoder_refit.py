"""`text2sign refit-decoder`: a latent model's decoder fitted to a corpus, its latent space (the
encoder and the normalisation) and its denoiser unchanged; a student takes its teacher's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_corpus, same_tensors
from safetensors.torch import load_file

from text2sign.apps.info import describe
from text2sign.cli.evaluation import decoded_clips
from text2sign.data.dataset import open_clips, to_unit
from text2sign.evaluation.evaluate import round_trip
from text2sign.model_folder.autoencoder_io import load_autoencoder
from text2sign.model_folder.build import build_config
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.models.autoencoder import reconstruction_loss
from text2sign.training.decoder_refit import refit_decoder, take_decoder
from text2sign.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def latent_model(data, out, seed=0):
    """A latent model whose autoencoder had 3 steps: its decoder has much left to learn."""
    sets = [f"data.path={data}", "data.val_fraction=0", "data.holdout_texts=0",
            "train.sample_every=0", "latent.enabled=true", "latent.width=8",
            "latent.channels=2", "latent.steps=3", "latent.batch_size=4",
            "model.params.stem=1", "train.max_steps=1", f"train.seed={seed}"]
    return train(build_config("tiny", overrides=sets), out, progress=False, device="cpu")


def recon_loss(folder, data):
    """The folder's autoencoder's weighted L1 over every frame of the corpus."""
    cfg = Text2SignPipeline.from_pretrained(folder, device="cpu").config
    ae = load_autoencoder(folder, cfg.latent)
    cache = open_clips(data, cfg.data.frames, cfg.data.size, progress=False)
    frames = torch.cat([to_unit(torch.from_numpy(cache[i]).permute(0, 3, 1, 2))
                        for i in range(len(cache))])
    with torch.no_grad():
        latents = ae.encode(frames.permute(1, 0, 2, 3)[None])
        recon = ae.decode(latents)[0].permute(1, 0, 2, 3)
    return float(reconstruction_loss(recon, frames).mean())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    data = make_corpus(root / "clips")
    return latent_model(data, root / "run"), data


def test_a_refitted_decoder_draws_the_corpus_better_in_the_same_latent_space(model, tmp_path):
    source, data = model
    out = refit_decoder(source, data, tmp_path / "refit", steps=40, batch_size=4, lr=5e-3,
                        progress=False, command="text2sign refit-decoder run --steps 40")
    before, after = load_file(source / "autoencoder.safetensors"), load_file(
        out / "autoencoder.safetensors")
    assert before.keys() == after.keys()
    kept = [k for k in before if not k.startswith("decoder.")]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)  # encoder, normalisation
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert recon_loss(out, data) < 0.8 * recon_loss(source, data)
    # The denoiser, its text encoder, texts and readers are the source's.
    for name in ("denoiser.safetensors", "text.safetensors"):
        assert same_tensors(source / name, out / name)
    assert (out / "texts.txt").read_text() == (source / "texts.txt").read_text()
    info = json.loads((out / "config.json").read_text())
    refit = info["autoencoder"]["decoder_refit"]
    assert refit["steps"] == 40 and refit["clips"] == 6 and refit["from"] == "run"  # the run's name
    assert refit["command"] == "text2sign refit-decoder run --steps 40"
    assert info.get("command") == json.loads((source / "config.json").read_text()).get("command")
    card = (out / "README.md").read_text()
    assert f"- decoder: refitted on `{data}` (40 steps of 4 frames" in card
    assert any(line.startswith("decoder") and f"refitted on {data} (40 steps of 4 frames"
               in line for line in describe(out))  # text2sign info
    pipe = Text2SignPipeline.from_pretrained(out, device="cpu")  # checksums verified
    assert pipe(["A"], steps=2).shape == (1, 4, 16, 16, 3)


def test_a_run_from_a_refitted_model_keeps_its_decoder_and_says_so(model, tmp_path):
    source, data = model
    refitted = refit_decoder(source, data, tmp_path / "refit", steps=2, batch_size=4,
                             progress=False)
    sets = [f"data.path={data}", "data.val_fraction=0", "data.holdout_texts=0",
            "train.sample_every=0", "latent.enabled=true", "latent.width=8",
            "latent.channels=2", "model.params.stem=1", "train.max_steps=1",
            f"model.init_from={refitted}"]
    out = train(build_config("tiny", overrides=sets), tmp_path / "run", progress=False,
                device="cpu")
    assert same_tensors(out / "autoencoder.safetensors", refitted / "autoencoder.safetensors")
    ae = json.loads((out / "config.json").read_text())["autoencoder"]
    assert ae["from"] == str(refitted)
    assert ae["decoder_refit"] == json.loads(
        (refitted / "config.json").read_text())["autoencoder"]["decoder_refit"]
    assert "- decoder: refitted on" in (out / "README.md").read_text()


def test_a_student_takes_its_teachers_refitted_decoder(model, tmp_path):
    source, data = model
    refitted = refit_decoder(source, data, tmp_path / "refit", steps=2, batch_size=4,
                             progress=False)
    # the source stands in for a student: it encodes as its teacher, the refitted folder
    taken = take_decoder(source, refitted, tmp_path / "taken")
    assert same_tensors(taken / "autoencoder.safetensors", refitted / "autoencoder.safetensors")
    assert same_tensors(taken / "denoiser.safetensors", source / "denoiser.safetensors")
    refit = json.loads((taken / "config.json").read_text())["autoencoder"]["decoder_refit"]
    assert refit["taken_from"] == "refit" and refit["steps"] == 2
    assert "- decoder: taken from refit, which refitted it" in (taken / "README.md").read_text()

    with pytest.raises(ValueError, match="has no refitted decoder"):
        take_decoder(refitted, source, tmp_path / "none")
    other = latent_model(data, tmp_path / "other", seed=1)  # another autoencoder
    with pytest.raises(ValueError, match="encodes differently"):
        take_decoder(other, refitted, tmp_path / "wrong")
    with pytest.raises(ValueError, match="new folder"):
        refit_decoder(source, data, source, steps=1, progress=False)


def test_a_pixel_model_has_no_decoder_to_refit(tmp_path):
    data = make_corpus(tmp_path / "clips")
    sets = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0",
            "train.max_steps=1"]
    pixel = train(build_config("tiny", overrides=sets), tmp_path / "run", progress=False,
                  device="cpu")
    with pytest.raises(ValueError, match="pixel space"):
        refit_decoder(pixel, data, tmp_path / "out", steps=1, progress=False)
    cache = open_clips(data, 4, 16, progress=False)
    with pytest.raises(ValueError, match="pixel space: it has no autoencoder"):
        decoded_clips(str(pixel), cache, "cpu")  # reader score --decoded-by


def test_reader_score_reads_through_a_models_autoencoder(model):
    source, data = model
    cache = open_clips(data, 4, 16, progress=False)
    decoded = decoded_clips(str(source), cache, "cpu")
    ae = load_autoencoder(source, Text2SignPipeline.from_pretrained(source).config.latent)
    assert np.array_equal(decoded[2], round_trip(ae, cache[2]))
    assert not np.array_equal(decoded[2], cache[2])  # drawn by a 3-step decoder
    with pytest.raises(ValueError, match="draws 16 px frames, the clips are 8 px"):
        decoded_clips(str(source), open_clips(data, 4, 8, progress=False), "cpu")
