"""What a user meets of a model's languages: `sample --language`, `info`, `data fingerspelling
--list-languages` and the serve API's `language` field, on a tiny model of ASL and DGS trained
here (tests/multilingual_folders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from multilingual_folders import LANGUAGES, train_two_language_model

from text2sign.cli import build_parser, main
from text2sign.data.video_io import write_gif

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_two_language_model(tmp_path_factory.mktemp("two-languages"))


@pytest.fixture(scope="module")
def pipe(model):
    from text2sign.model_folder.pipeline import Text2SignPipeline

    return Text2SignPipeline.from_pretrained(model, device="cpu")


def test_the_model_signs_the_languages_of_its_corpus_folders(pipe):
    assert pipe.config.text.languages == LANGUAGES == pipe.languages
    assert pipe.default_language == "ase"


def sample(model: Path, out: Path, *args: str) -> int:
    return main(["sample", "--model", str(model), "--steps", "1", "--out", str(out),
                 "--device", "cpu", "-q", *args])


def spy_languages(monkeypatch) -> list:
    """The ``language`` of every pipeline call from now on."""
    from text2sign.model_folder.pipeline import Text2SignPipeline

    calls, call = [], Text2SignPipeline.__call__

    def spy(self, texts, **kwargs):
        calls.append(kwargs.get("language"))
        return call(self, texts, **kwargs)

    monkeypatch.setattr(Text2SignPipeline, "__call__", spy)
    return calls


def test_sample_language_writes_asl_as_before_and_another_language_beside_it(
        model, pipe, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = spy_languages(monkeypatch)
    assert sample(model, out, "A") == 0
    assert sample(model, out, "--language", "gsg", "A", "Ä") == 0
    assert calls == ["ase", "gsg"]  # the model's default, then the one asked
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.gif"))
    assert written == ["A-00.gif", "gsg/A-00.gif", "gsg/Ä-00.gif"]  # nothing overwritten
    assert (out / "contact.png").is_file() and (out / "gsg" / "contact.png").is_file()
    # the GIF is the pipeline's clip in that language, written the same way
    write_gif(tmp_path / "want.gif", pipe(["A"], steps=1, language="gsg")[0], fps=pipe.gif_fps)
    assert (out / "gsg" / "A-00.gif").read_bytes() == (tmp_path / "want.gif").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--language", "ukl", "A"], "this model was not trained on ukl; it signs ase, gsg"),
    (["--language", "xx", "A"], "unknown sign language 'xx'; codes are ase, asq"),
    (["Ä"], "text 'Ä' has letters the ase alphabet lacks: ä"),  # the default: ASL
    (["--language", "ase", "A", "Ä"], "the ase alphabet lacks: ä"),
])
def test_sample_refuses_a_language_or_text_in_one_line_and_generates_nothing(model, tmp_path,
                                                                             capsys, args,
                                                                             message):
    assert sample(model, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("text2sign sample: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_info_lists_the_models_languages(model, capsys):
    assert main(["info", str(model)]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()
                if line.startswith("languages"))
    assert rows == {"languages": "ase, gsg (2; sample one with --language CODE)"}
    assert main(["info"]) == 0  # the shipped model: ASL alone, today
    assert "\nlanguages        ase\n" in capsys.readouterr().out


def test_list_languages_marks_what_the_shipped_model_signs(capsys, monkeypatch):
    from text2sign.model_folder import shipped

    def listing() -> list[str]:
        args = build_parser().parse_args(["data", "fingerspelling", "--list-languages"])
        assert args.func(args) == 0
        return capsys.readouterr().out.splitlines()

    lines = listing()
    marked = [line.split()[1] for line in lines if line.startswith("* ") and "  " in line[2:]]
    # the default model signs ASL; the shipped multilingual model every real alphabet
    assert marked == list(shipped.default_languages())
    assert marked[0] == "ase" and {"gsg", "ukl", "cse", "gss", "jos"} <= set(marked)
    assert "fsl" not in marked and len(marked) == 19
    assert any(line.startswith("* gsg  30  A ä B") for line in lines)
    assert lines[-1].startswith("* a shipped model signs it")
    # read from the shipped model's config.json: a multilingual one marks all it signs
    monkeypatch.setattr(shipped, "default_languages", lambda: ("ase", "gsg", "ukl"))
    lines = listing()
    assert [line.split()[1] for line in lines if line.startswith("* ")][:3] == ["ase", "gsg",
                                                                                "ukl"]


def test_a_language_only_the_multilingual_model_signs_chooses_it(model, monkeypatch, capsys,
                                                                  tmp_path):
    """No model named: the student signs what it signs; a language it lacks that the shipped
    multilingual model signs picks that model, for `sample` as for `resolve_model`."""
    from text2sign.model_folder import shipped
    from text2sign.model_folder.resolve import resolve_model

    monkeypatch.setattr(shipped, "multilingual_model", lambda: model)  # signs ase, gsg
    assert resolve_model().name == resolve_model(language="ase").name == "shipped:student"
    chosen = resolve_model(language="gsg")
    assert (chosen.name, chosen.path, chosen.languages) == ("shipped:multilingual", model,
                                                            ("ase", "gsg"))
    assert resolve_model(language="ukl").name == "shipped:student"  # neither signs it
    assert shipped.default_languages()[-1] == "gsg"  # what --list-languages marks
    out = tmp_path / "out"
    assert main(["sample", "--language", "gsg", "AB", "--steps", "2", "--out", str(out)]) == 0
    assert f"model: {model}" in capsys.readouterr().out
    assert (out / "gsg" / "AB-00.gif").is_file()
    assert main(["sample", "--language", "ukl", "AB", "--out", str(out)]) == 2
    assert "ukl" in capsys.readouterr().err


def test_the_shipped_models_languages_come_from_its_config_alone(model, monkeypatch):
    """`default_languages` reads text.languages from config.json: no weights, no torch model."""
    from text2sign.model_folder import shipped

    monkeypatch.setattr(shipped, "student", lambda: model.parent / "none")  # not installed
    monkeypatch.setattr(shipped, "multilingual_model", lambda: model.parent / "none")
    monkeypatch.setattr(shipped, "model", lambda: model)
    assert shipped.default_languages() == ("ase", "gsg")
    monkeypatch.setattr(shipped, "model", lambda: model.parent / "none")
    assert shipped.default_languages() == ()


# ------------------------------------------------------------------------------------- serve


@pytest.fixture(scope="module")
def server(pipe, model):
    pytest.importorskip("starlette", reason="needs the [serve] extra: pip install -e '.[serve]'")
    pytest.importorskip("uvicorn", reason="needs the [serve] extra: pip install -e '.[serve]'")
    from text2sign.serve.app import Service, create_app, serve_in_thread
    from text2sign.serve.corpus import Corpus

    service = Service(pipe, str(model), pipe.info, corpus=Corpus(pipe.config.data.path))
    with serve_in_thread(create_app(service)) as url:
        yield url


def api(url: str, body=None) -> tuple[int, dict]:
    from test_serve import get, post

    if body is None:
        status, raw = get(url + "/api/info")
        return status, json.loads(raw)
    status, answer, _ = post(url, body)
    return status, answer


def test_api_info_lists_the_languages(server):
    status, info = api(server)
    assert status == 200
    assert info["languages"] == LANGUAGES and info["default_language"] == "ase"


def test_api_language_field_signs_in_that_language(server, pipe, monkeypatch):
    from test_serve import get, png_frames

    calls = spy_languages(monkeypatch)
    status, r = api(server, {"text": "A", "steps": 1, "language": "gsg"})
    assert status == 200 and r["language"] == "gsg"
    clip = png_frames(get(server + r["clip"]["frames"])[1], r["clip"]["frames_count"])
    assert np.array_equal(clip, pipe(["A"], steps=1, language="gsg")[0])
    status, asl = api(server, {"text": "A", "steps": 1})  # the default: ASL
    assert status == 200 and asl["language"] == "ase"
    assert calls == ["gsg", "gsg", "ase"]  # the server's, the test's, the server's
    # each language's real clip: the corpus's A of gsg/ moves down, the one of ase/ right
    assert r["real"] is not None and asl["real"] is not None
    assert r["real"]["frames"] != asl["real"]["frames"]
    german = png_frames(get(server + r["real"]["frames"])[1], r["real"]["frames_count"])
    american = png_frames(get(server + asl["real"]["frames"])[1], asl["real"]["frames_count"])
    moved = [np.argwhere(c[-1].sum(-1) > 200).mean(0) - np.argwhere(c[0].sum(-1) > 200).mean(0)
             for c in (german, american)]  # (dy, dx) of the square, first to last frame
    assert moved[0][0] > 2 > abs(moved[0][1]) and moved[1][1] > 2 > abs(moved[1][0])
    status, r = api(server, {"text": "Ä", "steps": 1, "language": "gsg"})
    assert status == 200 and r["language"] == "gsg" and r["real"] is not None


@pytest.mark.parametrize("body, message", [
    ({"text": "A", "language": "ukl"}, "\"language\" 'ukl' is not one this model signs; "
                                       "allowed: ase, gsg"),
    ({"text": "A", "language": "xx"}, "\"language\" 'xx' is not a sign-language code text2sign "
                                      "knows; allowed: ase, gsg"),
    ({"text": "A", "language": "fsl"}, "'fsl' is not a sign-language code text2sign knows"),
    ({"text": "Ä"}, "text 'Ä' has letters the ase alphabet lacks: ä; ase spells A B C"),
    ({"text": "Ä", "language": "ase"}, "; this model signs ase, gsg"),
    ({"text": "A", "language": 3}, "\"language\" must be a string like \"ase\"; got int"),
    ({"text": "A", "language": ""}, "\"language\" '' is not a sign-language code"),
])
def test_api_refuses_a_language_or_text_with_a_400_naming_the_allowed(server, body, message):
    status, r = api(server, body)
    assert status == 400
    assert message in r["error"] and "\n" not in r["error"]
    assert r["error"].endswith(("allowed: ase, gsg", "this model signs ase, gsg"))


def test_page_picks_the_language_from_the_models_list(server):
    from text2sign.serve.browser import find_chromium, headless_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium: install Debian's chromium and chromium-driver")
    pytest.importorskip("selenium", reason="needs selenium: pip install -e '.[dev]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = headless_chromium()
    try:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "language-field").is_displayed())
        picker = Select(driver.find_element(By.ID, "language"))
        assert [o.text for o in picker.options] == LANGUAGES
        assert picker.first_selected_option.text == "ase"  # the model's default

        driver.find_element(By.ID, "text").send_keys("Ä")  # ASL lacks it: the API's 400 shows
        driver.find_element(By.ID, "steps").send_keys("1")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
        assert driver.find_element(By.ID, "status").text.endswith("this model signs ase, gsg")

        picker.select_by_value("gsg")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-shown"))
        assert driver.find_element(By.ID, "status").text == ""
        assert driver.find_element(By.ID, "gen-label").text == '"Ä" in gsg'
        gif = driver.find_element(By.LINK_TEXT, "GIF")
        assert gif.get_attribute("download") == "Ä-gsg-seed0.gif"
    finally:
        driver.quit()
