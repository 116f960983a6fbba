"""`text2sign serve`: the JSON API on a tiny model trained here; the page in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette", reason="needs the [serve] extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the [serve] extra: pip install -e '.[serve]'")

from text2sign.data.video_io import read_video, write_gif  # noqa: E402
from text2sign.evaluation.recognizer import RecognizerConfig, TrainSettings  # noqa: E402
from text2sign.evaluation.sequence import (  # noqa: E402
    SequenceConfig,
    SequenceNet,
    SequenceRecognizer,
)
from text2sign.evaluation.transformer_reader import (  # noqa: E402
    TransformerReader,
    TransformerReaderConfig,
    TransformerReaderNet,
)
from text2sign.model_folder.build import build_config  # noqa: E402
from text2sign.model_folder.folder_io import TrainingTexts, training_texts  # noqa: E402
from text2sign.model_folder.model_info import ModelInfo  # noqa: E402
from text2sign.model_folder.pipeline import Text2SignPipeline  # noqa: E402
from text2sign.serve.app import Limits, Service, create_app, serve_in_thread  # noqa: E402
from text2sign.serve.browser import find_chromium, headless_chromium  # noqa: E402
from text2sign.serve.corpus import Corpus  # noqa: E402
from text2sign.serve.reader import find_reader_folders, load_readers  # noqa: E402

TEXTS = {"A": ((1, 0), (255, 0, 0)), "B": ((0, 1), (0, 255, 0)), "C": ((1, 1), (0, 0, 255))}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny model (4 frames at 16 px, 3 training steps) with a recognizer in MODEL/recognizer,
    trained on coloured squares moving one way per text."""
    from text2sign.data.cache import ClipCache
    from text2sign.data.dataset import open_clips
    from text2sign.evaluation.recognizer import train_recognizer
    from text2sign.training.loop import train

    root = tmp_path_factory.mktemp("serve")
    corpus = root / "corpus"
    for text, ((dx, dy), colour) in TEXTS.items():
        for k in range(2):
            video = np.zeros((4, 16, 16, 3), np.uint8)
            for t in range(4):
                x, y = 2 + k + dx * t * 2, 2 + dy * t * 2
                video[t, y:y + 5, x:x + 5] = colour
            write_gif(corpus / f"{text}-{k}.gif", video, fps=8)
            (corpus / f"{text}-{k}.txt").write_text(text)
    cfg = build_config("tiny", overrides=[f"data.path={corpus}", "data.val_fraction=0",
                                          "train.sample_every=0", "train.max_steps=3",
                                          "train.checkpoint_every=0"])
    folder = train(cfg, root / "run", progress=False, device="cpu")
    cache: ClipCache = open_clips(corpus, 4, 16, progress=False)
    recognizer = train_recognizer(cache, list(range(len(cache))), device="cpu", progress=False,
                                  config=RecognizerConfig(frames=4, size=16, width=8,
                                                          feature_dim=32),
                                  settings=TrainSettings(steps=10, batch_size=8))
    recognizer.save(folder / "recognizer")
    return folder


@pytest.fixture(scope="module")
def pipe(model):
    return Text2SignPipeline.from_pretrained(model, device="cpu")


def make_service(pipe, model: Path, reader=True, **limits) -> Service:
    corpus = Corpus(pipe.config.data.path)
    read, folders = load_readers([model / "recognizer"]) if reader else (None, None)
    return Service(pipe, str(model), pipe.info, read, folders, corpus, Limits(**limits))


@pytest.fixture(scope="module")
def server(pipe, model):
    with serve_in_thread(create_app(make_service(pipe, model))) as url:
        yield url


def post(url: str, body, raw: bytes | None = None) -> tuple[int, dict, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/api/generate", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read()), dict(res.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def png_frames(data: bytes, frames: int) -> np.ndarray:
    from PIL import Image

    strip = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (H, T*W, 3)
    return np.stack(np.split(strip, frames, axis=1))  # (T, H, W, 3)


def test_generate_returns_the_pipelines_clip_reading_real_clip_and_timing(server, pipe, tmp_path):
    status, r, _ = post(server, {"text": "A", "steps": 2, "guidance": 2.0, "seed": 5})
    assert status == 200, r
    expected = pipe(["A"], steps=2, guidance=2.0, seed=5)[0]  # (T, H, W, 3)
    assert (r["text"], r["steps"], r["guidance"], r["seed"]) == ("A", 2, 2.0, 5)
    assert r["clip"]["frames_count"] == 4 and r["clip"]["width"] == 16
    status, strip = get(server + r["clip"]["frames"])
    assert status == 200 and np.array_equal(png_frames(strip, 4), expected)
    status, gif = get(server + r["clip"]["gif"])
    (tmp_path / "a.gif").write_bytes(gif)
    assert status == 200 and read_video(tmp_path / "a.gif")[0].shape == (4, 16, 16, 3)
    status, mp4 = get(server + r["clip"]["mp4"])
    assert status == 200 and mp4[4:8] == b"ftyp"
    assert r["reading"]["text"] in TEXTS and 0.0 <= r["reading"]["confidence"] <= 1.0
    assert r["readings"] == {"classifier": {**r["reading"], "matches": r["reading"]["text"] == "A"}}
    assert r["agree"] is None  # one reader
    assert r["seen"] is True and "training texts" in r["seen_source"]
    status, real = get(server + r["real"]["frames"])
    assert status == 200 and png_frames(real, 4).shape == (4, 16, 16, 3)
    assert all(r["timing"][k] >= 0 for k in ("queued_s", "generate_s", "read_s", "total_s"))
    assert r["timing"]["generate_s"] <= r["timing"]["total_s"]


def test_defaults_and_determinism(server, pipe):
    _, first, _ = post(server, {"text": "B"})
    _, again, _ = post(server, {"text": "B", "steps": None, "seed": 0})
    assert first["steps"] == pipe.config.sample.steps and first["seed"] == 0
    assert first["guidance"] == pipe.config.sample.guidance
    a = png_frames(get(server + first["clip"]["frames"])[1], 4)
    b = png_frames(get(server + again["clip"]["frames"])[1], 4)
    assert np.array_equal(a, b)
    _, other, _ = post(server, {"text": "B", "seed": 1})
    assert not np.array_equal(a, png_frames(get(server + other["clip"]["frames"])[1], 4))


def test_unseen_text_has_no_real_clip(server):
    status, r, _ = post(server, {"text": "AB", "steps": 2})
    assert status == 200 and r["seen"] is False and r["real"] is None


@pytest.mark.parametrize("body, raw, message", [
    ({}, None, 'missing field "text"'),
    ({"text": ""}, None, '"text" is empty'),
    ({"text": "   "}, None, '"text" is empty'),
    ({"text": "x" * 65}, None, "65 characters; at most 64"),
    ({"text": "é" * 9}, None, "18 bytes in UTF-8; this model reads at most 16"),
    ({"text": 3}, None, '"text" must be a string; got int'),
    ({"text": ["A"]}, None, '"text" must be a string; got list'),
    ({"text": "A", "steps": "5"}, None, '"steps" must be an integer'),
    ({"text": "A", "steps": 2.5}, None, '"steps" must be an integer'),
    ({"text": "A", "steps": True}, None, '"steps" must be an integer'),
    ({"text": "A", "steps": 0}, None, '"steps" is 0; it must be between 1 and 200'),
    ({"text": "A", "steps": 10**6}, None, "between 1 and 200"),
    ({"text": "A", "guidance": "high"}, None, '"guidance" must be a finite number'),
    ({"text": "A", "guidance": -1}, None, '"guidance" is -1'),
    ({"text": "A", "seed": -3}, None, '"seed" is -3; it must be between 0 and 2147483647'),
    (None, b'{"text": "A", "guidance": 1e999}', '"guidance" must be a finite number'),
    (None, b'{"text": "A", "guidance": ' + b"9" * 400 + b"}", '"guidance" must be a finite'),
    (None, b'{"text": "A", "steps": ' + b"9" * 400 + b"}", '"steps" is 999'),
    ({"text": "A", "sampler": "ddim"}, None, "unknown field(s) ['sampler']"),
    (["A"], None, "must be a JSON object"),
    (None, b'{"text": "A"', "not valid JSON"),
    (None, b'{"text": "A", "guidance": NaN}', '"guidance" must be a finite number'),
    (None, b"\xff\xfe", "not valid JSON"),
    (None, b"", "not valid JSON"),
])
def test_bad_input_gets_a_400_with_one_line(server, body, raw, message):
    status, r, _ = post(server, body, raw)
    assert status == 400
    assert message in r["error"] and "\n" not in r["error"] and "Traceback" not in r["error"]


def test_oversized_body_and_unknown_routes(server):
    status, r, _ = post(server, None, json.dumps({"text": "A" * 20000}).encode())
    assert status == 413 and "over 16384 bytes" in r["error"]
    status, body = get(server + "/api/nothing")
    assert status == 404 and json.loads(body) == {"error": "GET /api/nothing: not found"}
    status, body = get(server + "/api/generate")
    assert status == 405 and "method not allowed" in json.loads(body)["error"]
    status, body = get(server + "/api/clips/secret.txt")
    assert status == 404 and "no clip 'secret.txt'" in json.loads(body)["error"]
    assert get(server + "/api/clips/..%2F..%2Fetc%2Fpasswd")[0] == 404


def test_page_and_info(server, model):
    status, page = get(server + "/")
    assert status == 200 and b'id="generate"' in page and b"/api/generate" in page
    status, body = get(server + "/api/info")
    info = json.loads(body)
    assert info["model"]["name"] == str(model) and info["model"]["frames"] == 4
    assert info["readers"] == [{"name": "classifier", "folder": str(model / "recognizer")}]
    assert info["recognizer"] == str(model / "recognizer") and info["corpus"]["texts"] == 3
    assert info["limits"]["max_bytes"] == 16 and info["memory_mb"] > 0
    assert info["languages"] == ["ase"] and info["default_language"] == "ase"  # one language


class GatedPipe:
    """The real pipeline behind a gate, so a test can hold the worker busy."""

    def __init__(self, pipe, fail_on: str | None = None):
        self.pipe, self.fail_on = pipe, fail_on
        self.gate, self.entered = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, texts, **kwargs):
        self.entered.set()
        self.gate.wait(60)
        if texts[0] == self.fail_on:
            raise RuntimeError("out of memory\nsecond line of a long message")
        return self.pipe(texts, **kwargs)


def test_full_queue_answers_503_then_serves_the_queued(pipe, model):
    gated = GatedPipe(pipe)
    service = make_service(gated, model, reader=False, max_queue=1)
    with serve_in_thread(create_app(service)) as url:
        results = {}

        def client(name):
            results[name] = post(url, {"text": "A", "steps": 1})

        first = threading.Thread(target=client, args=("running",))
        first.start()
        assert gated.entered.wait(30)  # the worker holds the first request
        second = threading.Thread(target=client, args=("waiting",))
        second.start()
        deadline = time.monotonic() + 30
        while service.worker.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, r, headers = post(url, {"text": "B", "steps": 1})
        assert status == 503 and "busy" in r["error"] and headers["retry-after"] == "5"
        gated.gate.set()
        first.join(60)
        second.join(60)
        assert results["running"][0] == 200 and results["waiting"][0] == 200
        answer = results["running"][1]
        assert answer["reading"] is None and answer["readings"] == {}  # no reader: no reading
        assert answer["agree"] is None


def test_a_failing_generation_is_a_500_line_and_the_worker_goes_on(pipe, model):
    gated = GatedPipe(pipe, fail_on="C")
    gated.gate.set()
    with serve_in_thread(create_app(make_service(gated, model))) as url:
        status, r, _ = post(url, {"text": "C", "steps": 1})
        assert status == 500
        assert r["error"] == "generation failed: RuntimeError: out of memory"
        assert post(url, {"text": "A", "steps": 1})[0] == 200


def test_a_client_that_leaves_mid_upload_leaves_no_traceback(pipe, model):
    """The app answers a body cut short by a disconnect instead of raising ClientDisconnect
    (which the server would log as an ASGI exception, with its traceback)."""
    service = make_service(pipe, model, reader=False)
    messages = iter([{"type": "http.request", "body": b'{"text": "A', "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/generate", "raw_path": b"",
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/json"),
                                                    (b"content-length", b"100")]}
    try:
        asyncio.run(create_app(service)(scope, receive, send))
    finally:
        service.store.close()
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert service.worker.pending == 0  # nothing was queued


def test_any_function_of_a_clip_is_a_reader(pipe):
    """The interface a sequence recognizer plugs into: uint8 (T, H, W, 3) and the sign language
    it was made in -> (text, confidence)."""
    seen = []

    def read(clip, language):
        seen.append((clip.dtype, clip.shape, language))
        return "hello", 0.25

    service = Service(pipe, "tiny", pipe.info, {"a function": read})
    with serve_in_thread(create_app(service)) as url:
        status, r, _ = post(url, {"text": "A", "steps": 1})
    assert status == 200 and r["reading"] == {"text": "hello", "confidence": 0.25}
    assert r["readings"] == {"a function": {"text": "hello", "confidence": 0.25,
                                            "matches": False}}
    assert seen == [(np.uint8, (4, 16, 16, 3), "ase")]
    assert r["real"] is None and r["seen"] is True  # no corpus; the model lists its texts


# ------------------------------------------------------------------- readers side by side

VOCAB = ["a", "b", "c"]  # the units of the tiny corpus's texts A, B, C


def fixed_reader(vocab: list[str], folder: Path) -> Path:
    """A conv-gru reader saved to `folder` whose CTC head says its first unit at every frame,
    whatever the clip: it reads every clip as vocab[0], with confidence 1."""
    config = SequenceConfig(frames=None, size=16, width=8, hidden=8, units="chars")
    net = SequenceNet(len(vocab), config)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(-20.0)
        net.head.bias[1] = 20.0  # output 0 is the CTC blank, 1 is vocab[0]
    return SequenceRecognizer(net, vocab, config).save(folder)


def random_transformer(folder: Path) -> Path:
    """A transformer reader of the tiny corpus's letters with random weights."""
    config = TransformerReaderConfig(size=16, width=8, dim=16, layers=1, heads=2,
                                     decoder_layers=1, max_units=4)
    return TransformerReader(TransformerReaderNet(len(VOCAB), config), VOCAB, config).save(folder)


@pytest.fixture(scope="module")
def two_readers(tmp_path_factory) -> list[Path]:
    """The second is the first with a and b swapped: one reads every clip "a", the other "b"."""
    root = tmp_path_factory.mktemp("readers")
    return [fixed_reader(VOCAB, root / "reads-a"), fixed_reader(["b", "a", "c"], root / "reads-b")]


def test_two_readers_read_each_clip_side_by_side_and_say_if_they_agree(pipe, two_readers):
    corpus = Corpus(pipe.config.data.path)
    read, folders = load_readers(two_readers, texts=corpus.texts)
    service = Service(pipe, "tiny", pipe.info, read, folders, corpus)
    with serve_in_thread(create_app(service)) as url:
        info = json.loads(get(url + "/api/info")[1])
        status, r, _ = post(url, {"text": "A", "steps": 1})
    assert info["readers"] == [{"name": "conv-gru", "folder": str(two_readers[0])},
                               {"name": "conv-gru-2", "folder": str(two_readers[1])}]
    assert status == 200
    assert r["readings"] == {"conv-gru": {"text": "a", "confidence": 1.0, "matches": True},
                             "conv-gru-2": {"text": "b", "confidence": 1.0, "matches": False}}
    assert r["agree"] is False
    # the fields of one reader stay, the first reader's, for older clients
    assert r["reading"] == {"text": "a", "confidence": 1.0}
    assert r["recognizer"] == info["recognizer"] == str(two_readers[0])

    read, folders = load_readers([two_readers[0], two_readers[0]])
    with serve_in_thread(create_app(Service(pipe, "tiny", pipe.info, read, folders))) as url:
        right = post(url, {"text": "A", "steps": 1})[1]
        wrong = post(url, {"text": "B", "steps": 1})[1]
    assert list(right["readings"]) == ["conv-gru", "conv-gru-2"]
    assert right["agree"] is True and all(x["matches"] for x in right["readings"].values())
    assert wrong["agree"] is True and not any(x["matches"] for x in wrong["readings"].values())


def test_a_reader_without_the_corpus_letters_is_refused_naming_it(pipe, tmp_path):
    no_c = fixed_reader(["a", "b"], tmp_path / "no-c")
    with pytest.raises(ValueError, match=r"reader '.*no-c': .*no output for 1 unit\(s\).*'c'"):
        load_readers([no_c], texts=Corpus(pipe.config.data.path).texts)


def touch_reader(folder: Path, cls) -> Path:
    """A folder that looks like a reader of class `cls` (finding does not load it)."""
    folder.mkdir(parents=True)
    (folder / cls.config_name).write_text("{}")
    (folder / cls.weights_name).write_bytes(b"")
    return folder


def test_which_readers_a_model_gets(tmp_path, monkeypatch):
    import text2sign.serve.reader as serve_reader
    from text2sign.evaluation.readers import resolve_readers
    from text2sign.evaluation.recognizer import Recognizer

    model, cache = tmp_path / "model", tmp_path / "cache"
    model.mkdir()
    assert find_reader_folders(model, None) == find_reader_folders(model, cache) == []
    classifier = touch_reader(cache / "recognizer-1", Recognizer)
    assert find_reader_folders(model, cache) == [classifier]  # the fallback
    old = touch_reader(cache / "sequence-old", SequenceRecognizer)
    new = touch_reader(cache / "sequence-new", SequenceRecognizer)
    os.utime(old, (1e9, 1e9))
    transformer = touch_reader(cache / "reader-transformer-1", TransformerReader)
    # evaluate's and demo's readers beside the cache: the newest of each architecture
    assert find_reader_folders(model, cache) == [new, transformer]

    monkeypatch.setattr(serve_reader.readers.shipped, "is_shipped", lambda folder: True)
    monkeypatch.setattr(serve_reader.readers, "shipped_reader_folders",
                        lambda: {"conv-gru": old, "transformer": transformer})
    assert find_reader_folders(model, cache) == [old, transformer]  # the shipped model's
    # --recognizer shipped DIR, as evaluate takes it
    assert resolve_readers(["shipped", str(new), str(old)]) == [old, transformer, new]

    # the model's own readers come first, either architecture in MODEL/recognizer
    own = random_transformer(model / "recognizer")
    assert find_reader_folders(model, cache) == [own]
    second = fixed_reader(VOCAB, model / "reader-transformer")
    assert find_reader_folders(model, cache) == [own, second]
    read, folders = load_readers(find_reader_folders(model, cache))
    assert folders == {"transformer": str(own), "conv-gru": str(second)}
    clip = np.zeros((5, 16, 16, 3), np.uint8)
    text, confidence = read["transformer"](clip)
    assert isinstance(text, str) and 0.0 <= confidence <= 1.0
    assert read["conv-gru"](clip) == ("a", 1.0)

    monkeypatch.setattr(serve_reader.readers, "shipped_reader_folders", lambda: {})
    with pytest.raises(FileNotFoundError, match="no shipped reader is installed"):
        resolve_readers(["shipped"])


def test_the_corpus_names_the_cache_the_data_pipeline_makes(pipe):
    """Readers trained by evaluate are looked for beside this cache, for either time mode."""
    from text2sign.data.dataset import open_clips

    corpus = Corpus(pipe.config.data.path)
    for frames, mode, fps in ((4, "resample", None), (8, "fps", 4.0)):
        made = open_clips(corpus.path, frames, 16, mode, progress=False, fps=fps)
        assert corpus.cache_dir(frames, 16, mode, "crop", fps) == Path(made.path)


def test_cli_serve_takes_recognizer_more_than_once(model, two_readers, capsys):
    from text2sign.cli import build_parser, main
    from text2sign.cli.serve import load_service

    args = build_parser().parse_args(["serve", "--model", str(model), "--device", "cpu",
                                      "--recognizer", str(two_readers[0]),
                                      "--recognizer", str(two_readers[1])])
    service = load_service(args)
    try:
        assert service.reader_folders == {"conv-gru": str(two_readers[0]),
                                          "conv-gru-2": str(two_readers[1])}
    finally:
        service.store.close()
    no_c = fixed_reader(["a", "b"], two_readers[0].parent / "no-c")
    assert main(["serve", "--model", str(model), "--port", "0", "--recognizer", str(no_c)]) == 2
    assert "no output for 1 unit(s)" in capsys.readouterr().err


def test_old_clips_are_deleted_past_keep_clips(pipe, model):
    service = make_service(pipe, model, reader=False, keep_clips=2)
    with serve_in_thread(create_app(service)) as url:
        urls = [post(url, {"text": "A", "steps": 1, "seed": s})[1]["clip"]["gif"]
                for s in range(3)]
        assert [get(url + u)[0] for u in urls] == [404, 404, 200]
        # The newest two: the last generated clip and A's real clip, shown with every answer.
        assert len(list(service.store.folder.glob("*.png"))) == 2
    assert not service.store.folder.exists()  # removed at shutdown


def test_training_texts_sources(pipe):
    corpus = Corpus(pipe.config.data.path)
    listed = training_texts(ModelInfo(pipe.config), ["A", "b"])
    assert listed.texts == {"a", "b"} and "texts.txt" in listed.source
    assert listed.seen("B") and not listed.seen("C")
    full = ModelInfo(pipe.config, data={"texts": 2, "examples": ["A", "B"]})
    assert training_texts(full, None) == TrainingTexts(frozenset({"a", "b"}),
                                                      "the model's list of training texts")
    partial = ModelInfo(pipe.config, data={"texts": 80, "examples": ["A", "B"]})
    known = training_texts(partial, None, corpus.texts, f"the corpus {corpus.path}")
    assert known.texts == {"a", "b", "c"} and "corpus" in known.source
    unknown = training_texts(partial, None)
    assert unknown.seen("A") is None
    assert "lists 2 of its 80" in unknown.source and "--data" in unknown.source


def test_cli_serve_runs_the_page_and_refuses_a_taken_port(model, capsys):
    from text2sign.cli import main

    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "text2sign", "serve", "--model", str(model),
                             "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("open http://"):
                break
        assert lines and lines[-1].startswith("open http://127.0.0.1:"), "".join(lines)
        url = lines[-1].split()[1].rstrip("/")
        assert f"reader:     classifier {model / 'recognizer'}" in "".join(lines)
        assert "languages:  ase\n" in lines
        status, body = get(url + "/api/info")
        # the model by its name (here its run's), never the server's absolute path
        assert status == 200 and json.loads(body)["model"]["name"] == model.parent.name
        port = int(url.rsplit(":", 1)[1])
        assert main(["serve", "--model", str(model), "--port", str(port)]) == 2
        assert main(["serve", "--model", str(model), "--port", "0", "--data",
                     str(model / "nothing")]) == 2
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "--data" in err
    finally:
        proc.terminate()
        proc.wait(30)


def test_cli_serve_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    from text2sign.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["serve"]) == 2
    assert "pip install 'text2sign[serve]'" in capsys.readouterr().err


# --------------------------------------------------------------------------- the page, in Chromium


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium: install Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver); .ci/run does")
def test_page_in_headless_chromium_plays_a_clip_two_readers_read(pipe, two_readers):
    pytest.importorskip("selenium", reason="needs selenium: pip install -e '.[dev]'")
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    read, folders = load_readers(two_readers)
    service = Service(pipe, "tiny", pipe.info, read, folders, Corpus(pipe.config.data.path))
    with serve_in_thread(create_app(service)) as server:
        driver = headless_chromium()
        try:
            driver.get(server + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: "Read back by: conv-gru, conv-gru-2."
                       in d.find_element(By.ID, "model").text)
            # a model of one language: no language picker
            assert not driver.find_element(By.ID, "language-field").is_displayed()

            driver.find_element(By.ID, "generate").click()  # nothing typed: the API's 400 shows
            wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class")
                       == "error")
            assert '"text" is empty' in driver.find_element(By.ID, "status").text

            driver.find_element(By.ID, "text").send_keys("AB")
            driver.find_element(By.ID, "steps").send_keys("2")
            driver.find_element(By.ID, "generate").click()
            wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-shown"))
            assert driver.find_element(By.ID, "status").text == ""
            # beside the generated clip: each reader's reading, then whether they agree
            rows = driver.find_elements(By.CSS_SELECTOR, "#reading [data-reader]")
            assert [row.text for row in rows] == [
                'conv-gru reads "a" 100% sure, not the text asked',
                'conv-gru-2 reads "b" 100% sure, not the text asked']
            assert driver.find_element(By.ID, "agree").text == "The readers disagree."
            assert driver.find_element(By.ID, "seen").text.startswith("no")
            gif = driver.find_element(By.LINK_TEXT, "GIF")
            assert gif.get_attribute("download") == "AB-seed0.gif"

            # What the page shows changes over time: several different frames of the clip.
            canvas = driver.find_element(By.ID, "clip")
            shots = []
            for _ in range(16):
                image = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")
                shots.append(np.asarray(image).tobytes())
                time.sleep(0.07)
            assert len(set(shots)) >= 3, f"the clip showed {len(set(shots))} distinct frames"
        finally:
            driver.quit()


@pytest.mark.parametrize("argv", [["evaluate", "--data", "x", "--per-text", "0"],
                                  ["demo", "--config", "x.yaml"],
                                  ["serve", "--port", "0", "--max-queue", "0"]],
                         ids=["evaluate", "demo", "serve"])
@pytest.mark.parametrize("user", [None, "64"], ids=["default", "user-set"])
def test_sampling_commands_turn_off_onednn_primitive_cache(monkeypatch, capsys, argv, user):
    # evaluate, demo and serve sample texts of many lengths: oneDNN's cache of a primitive per
    # conv shape is turned off before torch runs (docs/scale.md), unless the user set it.
    from text2sign.cli import main

    if user is None:
        monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", user)
    assert main(argv) == 2  # refused after the setting, before any model is loaded
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == (user or "0")
    assert capsys.readouterr().err
