"""Hub-style model folders: save_pretrained round trips, model cards, Hub ids offline,
diffusers-style call arguments."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import make_corpus, tiny_config

from text2sign.core.hub import is_hub_id
from text2sign.model_folder.card import CARD_FILE, SAMPLE_FILE, read_front_matter
from text2sign.model_folder.folder_io import add_evaluation
from text2sign.model_folder.model_info import ModelInfo
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.model_folder.resolve import read_info
from text2sign.model_folder.shipped import model as shipped_model
from text2sign.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(corpus, max_steps=2, checkpoint_every=0), out, progress=False,
          device="cpu")
    return out


def test_save_pretrained_round_trip_gives_identical_clips(tmp_path):
    pipe = Text2SignPipeline.from_pretrained(shipped_model(), device="cpu")  # latent: autoencoder
    saved = pipe.save_pretrained(tmp_path / "copy")
    again = Text2SignPipeline.from_pretrained(saved, device="cpu")
    first = pipe(["A", "hello"], steps=2, seed=5)  # two lengths: one clip each
    assert all(np.array_equal(a, b) for a, b in zip(first, again(["A", "hello"], steps=2,
                                                                 seed=5), strict=True))
    assert again.duration == pipe.duration is not None  # duration.json travels along
    assert again.training_texts == pipe.training_texts
    assert (saved / CARD_FILE).is_file() and (saved / "autoencoder.safetensors").is_file()


def test_model_info_reads_the_shipped_folder_and_writes_it_back():
    """The letters model's folder predates several keys (files, pretrained, held-out counts):
    every fact it has comes back unchanged, and a key a newer text2sign writes survives."""
    from text2sign.model_folder.shipped import letters_model

    raw = json.loads((letters_model() / "config.json").read_text())
    info = read_info(letters_model())
    assert info.step == raw["step"] and info.data["texts"] == 26 and info.files == {}
    assert info.config.latent.enabled and info.evaluation["top1"] == raw["evaluation"]["top1"]
    written = info.to_json()
    assert list(written) == list(raw)  # same keys, same order
    assert {k: v for k, v in written.items() if k != "config"} == \
        {k: v for k, v in raw.items() if k != "config"}
    newer = ModelInfo.from_json({**raw, "future": {"x": [1, 2]}}, "config.json")
    assert newer.extra == {"future": {"x": [1, 2]}}
    assert newer.to_json()["future"] == {"x": [1, 2]}


def test_save_pretrained_keeps_unknown_keys_and_the_facts(run, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(run / "model", folder)
    (folder / SAMPLE_FILE).unlink(missing_ok=True)  # another test may have added one
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "future": "kept"}))
    saved = Text2SignPipeline.from_pretrained(folder, device="cpu").save_pretrained(
        tmp_path / "copy")
    again = json.loads((saved / "config.json").read_text())
    assert again["future"] == "kept"
    assert {k: again[k] for k in raw} == raw  # checksums included: the weights are the same
    assert "## Sample" not in (saved / CARD_FILE).read_text()  # no sample.gif, no section


def test_every_model_folder_has_a_card_whose_front_matter_parses(run):
    card = (run / "model" / CARD_FILE).read_text()
    meta = read_front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "text2sign"
    assert {"sign-language", "text-to-video"} <= set(meta["tags"])
    assert "base_model" not in meta  # trained from scratch
    for section in ("## Use", "## Training", "## Evaluation", "## Limitations"):
        assert section in card
    assert "3 distinct texts" in card and "`ABC`" in card  # what it has seen
    shipped = read_front_matter((shipped_model() / CARD_FILE).read_text())
    assert "fingerspelling" in shipped["tags"]


def test_evaluation_goes_into_the_card_and_survives_save_pretrained(run, tmp_path):
    gif = tmp_path / "compare.gif"
    from text2sign.data.video_io import write_animated_sheet

    clip = np.zeros((4, 16, 16, 3), np.uint8)
    write_animated_sheet(gif, [[clip, clip + 100]], ["A"])
    report = {"texts": 3, "clips": 3, "top1": 0.5, "top5": 1.0, "ceiling_top1": 1.0,
              "ceiling_top5": 1.0, "chance_top1": 1 / 3, "fd": float("nan"), "fd_floor": 2.0,
              "seconds_per_clip": 0.1, "device": "cpu (test)", "compare_gif": str(gif)}
    add_evaluation(run / "model", report, "text2sign evaluate --model RUN --data CORPUS --card")
    card = (run / "model" / CARD_FILE).read_text()
    assert "| top-1 | 0.500 |" in card and "| FD | n/a |" in card
    assert f"]({SAMPLE_FILE})" in card and (run / "model" / SAMPLE_FILE).is_file()
    info = json.loads((run / "model" / "config.json").read_text())
    assert info["evaluation"]["fd"] is None  # strict JSON
    copy = Text2SignPipeline.from_pretrained(run, device="cpu").save_pretrained(tmp_path / "c")
    assert "| top-1 | 0.500 |" in (copy / CARD_FILE).read_text()
    assert (copy / SAMPLE_FILE).read_bytes() == gif.read_bytes()


def test_output_type_generator_and_to(run):
    pipe = Text2SignPipeline.from_pretrained(run, device="cpu").to("cpu")
    clips = pipe(["A", "B"], steps=2, seed=1)
    as_pt = pipe(["A", "B"], steps=2, seed=1, output_type="pt")
    assert as_pt.shape == (2, 4, 3, 16, 16) and as_pt.dtype == torch.float32
    assert torch.equal((as_pt * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2),
                       torch.from_numpy(clips))
    pil = pipe(["A"], steps=2, seed=1, output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == 4 and pil[0][0].size == (16, 16)
    a = pipe(["A", "B"], steps=2, generator=torch.Generator().manual_seed(7))
    b = pipe(["A", "B"], steps=2, generator=torch.Generator().manual_seed(7))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="output_type='gif'; use one of np, pt, pil"):
        pipe(["A"], output_type="gif")


def test_resolve_reads_a_folder_once_with_its_name_and_languages(run, tmp_path):
    """One ModelFolder: a run folder by the run's name, ASL unless config.json names its
    languages; a languages value that is not a list of codes is refused naming it."""
    from text2sign.model_folder.resolve import resolve_model

    model = resolve_model(run)
    assert (model.path, model.name, model.languages) == (run / "model", "run", ("ase",))
    assert model.training_texts == ["A", "B", "C"] and model.card == run / "model" / CARD_FILE
    copy = tmp_path / "copy"
    shutil.copytree(run / "model", copy)
    raw = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**raw, "languages": ["ase", "bfi"]}))
    again = resolve_model(copy)
    assert (again.name, again.languages) == ("copy", ("ase", "bfi"))
    (copy / "config.json").write_text(json.dumps({**raw, "languages": "ase"}))
    with pytest.raises(ValueError, match="languages 'ase' is not a list of language codes"):
        resolve_model(copy)


def test_hub_id_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert is_hub_id("someone/asl-letters") and not is_hub_id("runs/../x")
    assert not is_hub_id("/abs/path") and not is_hub_id("a/b/c")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set.*local model folder"):
        Text2SignPipeline.from_pretrained("someone/asl-letters")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="model folder 'runs/mnie' does not exist"):
        Text2SignPipeline.from_pretrained("runs/mnie")  # a typo, not a Hub id to look up
