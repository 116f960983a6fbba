"""CLI command `serve`; the web stack is imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from text2sign.core.console import add_quiet
from text2sign.serve.corpus import Corpus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="a web page (and JSON API) to type a text and watch the sign",
        description="Serve a page where you type a text, generate its clip and watch it beside "
        "a real clip and what each reader reads back. Needs: pip install 'text2sign[serve]'.")
    p.add_argument("--model", help="model folder (or run folder with model/); default: the "
                   "shipped ASL model's few-step student")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--data", metavar="DIR|CACHE", help="the model's clip folder or cache, for "
                   "real clips and 'seen in training' (default: the model's data.path if present)")
    p.add_argument("--recognizer", metavar="DIR", action="append",
                   help="a reader folder to read clips back; give it again for more readers, "
                   "side by side; `shipped` names the shipped readers (default: MODEL/recognizer "
                   "and MODEL/reader-transformer; the shipped readers for the shipped model; "
                   "else the readers cached next to the corpus)")
    p.add_argument("--no-recognizer", action="store_true", help="do not read clips back")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    p.add_argument("--max-queue", type=int, default=8,
                   help="requests that may wait for the model; more get 503 (default 8)")
    p.add_argument("--max-chars", type=int, default=64, help="longest text accepted (default 64)")
    add_quiet(p)
    p.set_defaults(func=run_serve)


def load_service(args: argparse.Namespace):
    """The model, corpus and readers that `args` name, wrapped in a serve Service."""
    # torch (pipeline, reader), PIL (corpus), the [serve] extra (app): imported here, not by --help
    from text2sign.evaluation.readers import resolve_readers
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.model_folder.resolve import resolve_model
    from text2sign.serve.app import Limits, Service
    from text2sign.serve.reader import find_reader_folders, load_readers

    if args.max_queue < 1:
        raise ValueError(f"--max-queue {args.max_queue}: must be at least 1")
    if args.max_chars < 1:
        raise ValueError(f"--max-chars {args.max_chars}: must be at least 1")
    if args.recognizer and args.no_recognizer:
        raise ValueError("--recognizer and --no-recognizer contradict each other; drop one")
    model = resolve_model(args.model)
    pipe = Text2SignPipeline.from_pretrained(model, device=args.device)
    folder = pipe.folder
    dc = pipe.config.data

    corpus = None
    data = Path(args.data) if args.data else Path(dc.path)
    if args.data and not data.exists():
        raise FileNotFoundError(f"--data {args.data!r} does not exist; pass the model's clip "
                                "folder (NAME.gif + NAME.txt) or its prepared cache")
    if args.data:
        corpus = Corpus(data)
    elif data.exists():
        try:
            corpus = Corpus(data)
        except ValueError as err:  # the model's own data.path: a note, not a failure
            print(f"corpus {str(data)!r} (the model's data.path) is not usable ({err}): no "
                  "real clips; pass --data DIR", file=sys.stderr)
    else:
        print(f"corpus {str(data)!r} (the model's data.path) is not here: no real clips; "
              "pass --data DIR", file=sys.stderr)

    readers, reader_folders = {}, {}
    if not args.no_recognizer:
        rate = dc.time_mode == "fps"
        cache = (corpus.cache_dir(dc.max_frames if rate else pipe.frames, pipe.size,
                                  dc.time_mode, dc.fit, dc.fps if rate else None)
                 if corpus else None)
        found = (resolve_readers(args.recognizer) if args.recognizer
                 else find_reader_folders(folder, cache))
        if found:
            readers, reader_folders = load_readers(found, str(pipe.device),
                                                   corpus.texts if corpus else None)
        else:
            hint = ("run `text2sign demo` here once (it builds the demo corpus and its "
                    "readers)" if not args.model else "pass --recognizer DIR")
            print("no reader found (MODEL/recognizer, or one `text2sign evaluate` cached next "
                  f"to the corpus): the page will not read clips back; {hint}", file=sys.stderr)
    limits = Limits(max_chars=args.max_chars, max_queue=args.max_queue)
    return Service(pipe, model.name, pipe.info, readers, reader_folders, corpus, limits)


def run_serve(args: argparse.Namespace) -> int:
    try:  # the optional [serve] extra: say how to install it before anything else
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ValueError(f"text2sign serve needs the [serve] extra ({err.name} is missing): "
                         "pip install 'text2sign[serve]'") from None
    from text2sign.cli.evaluation import no_primitive_cache

    no_primitive_cache()  # a long-lived process over texts of every length, before torch
    from text2sign.serve.app import bind, create_app, serve  # needs the [serve] extra

    sock = bind(args.host, args.port)  # before loading the model: a taken port fails at once
    try:
        service = load_service(args)
    except BaseException:
        sock.close()
        raise
    if not args.quiet:
        print(f"model:      {service.model_name}")
        print(f"languages:  {', '.join(service.pipe.languages)}")
        for name, where in service.reader_folders.items() or [("none", "")]:
            print(f"reader:     {name} {where}".rstrip())
        print(f"corpus:     {service.corpus.path if service.corpus else 'none'}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"listening on {args.host}: anyone who can reach this machine can use the page "
              "(there is no login)", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"open http://{host}:{sock.getsockname()[1]}/  (Ctrl-C stops)", flush=True)
    serve(create_app(service), sock, log_level="warning" if args.quiet else "info")
    return 0
