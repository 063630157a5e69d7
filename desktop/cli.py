"""The front door: no arguments opens the window; subcommands use the same core from a terminal.

Errors print one sentence to stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from desktop import __version__
from desktop.core.text import printable


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Private, local chat with open models. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"Hearth {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window offscreen-capable, load the model, write a few tokens, exit 0 if it worked")
    parser.add_argument("--quit-when-shown", action="store_true", help=argparse.SUPPRESS)  # start-up timing
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="ask a model and stream its answer to stdout")
    chat.add_argument("-m", "--model", required=True,
                      help="an installed model's id, a .gguf path, or PROVIDER/MODEL for a cloud model")
    chat.add_argument("--system", help="the system prompt")
    chat.add_argument("--max-tokens", type=int, help="longest answer, in tokens")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--seed", type=int, help="a fixed seed makes the answer repeatable")
    chat.add_argument("--show-thinking", action="store_true",
                      help="print a reasoning model's thinking (dimmed, on stderr) before its answer")
    # Documents (issue 18): files and collections the answer is given from, its sources on stderr.
    chat.add_argument("--file", action="append", default=[], metavar="PATH",
                      help="a document to answer from (PDF, DOCX, text, Markdown, HTML, CSV, code); repeat for more")
    chat.add_argument("--docs", action="append", default=[], metavar="COLLECTION",
                      help="a collection (hearth docs add) to search for the answer; repeat for more")
    chat.add_argument("--send-documents", action="store_true",
                      help="allow passages of the documents to be sent to a cloud model (PROVIDER/MODEL)")
    chat.add_argument("prompt", help="what to ask; '-' reads it from standard input")

    models = sub.add_parser("models", help="list, inspect, add and remove installed models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    mlist = msub.add_parser("list", help="installed models")
    mlist.add_argument("--json", action="store_true", help="machine-readable output")
    minfo = msub.add_parser("info", help="an installed model, or a hub repository's files and whether they run here")
    minfo.add_argument("id", help="an installed model's id, or a hub repository (publisher/name)")
    minfo.add_argument("--endpoint", help="hub address (default: $HF_ENDPOINT or huggingface.co)")
    minfo.add_argument("--context", type=int, default=4096, help="context length for the memory estimate")
    minfo.add_argument("--json", action="store_true", help="machine-readable output")
    msearch = msub.add_parser("search", help="find GGUF models on the Hugging Face hub")
    msearch.add_argument("query")
    msearch.add_argument("--sort", choices=("downloads", "likes", "lastModified"), default="downloads")
    msearch.add_argument("--limit", type=int, default=20)
    msearch.add_argument("--endpoint", help="hub address (default: $HF_ENDPOINT or huggingface.co)")
    msearch.add_argument("--json", action="store_true", help="machine-readable output")
    mpull = msub.add_parser("pull", help="download a model: REPO, REPO:QUANT or REPO:FILE (resumable)")
    mpull.add_argument("ref")
    mpull.add_argument("--endpoint", help="hub address (default: $HF_ENDPOINT or huggingface.co)")
    mimport = msub.add_parser("import", help="add a .gguf file from disk")
    mimport.add_argument("path")
    mimport.add_argument("--link", action="store_true",
                         help="use the file where it is instead of copying it")
    mrm = msub.add_parser("rm", help="remove a model (deletes its file unless it was linked)")
    mrm.add_argument("id", help="its id, or an unambiguous start of it (at least 3 characters)")
    mfound = msub.add_parser("found", help="GGUF models other apps keep on this computer (LM Studio, GPT4All, "
                             "Jan, Ollama, the Hugging Face cache); add one with `models import --link PATH`")
    mfound.add_argument("--json", action="store_true", help="machine-readable output, with what was skipped")
    mfound.add_argument("--verbose", "-v", action="store_true", help="also list what was skipped, and why")
    mlocate = msub.add_parser("locate", help="point a model whose file was moved at the file again "
                              "(accepted only if it is the same file)")
    mlocate.add_argument("id")
    mlocate.add_argument("path")

    compare = sub.add_parser("compare", help="ask 2 to 4 models the same thing, side by side")
    compare.add_argument("-m", "--model", action="append", required=True, dest="targets", metavar="TARGET",
                         help="an installed model or PROVIDER/MODEL; give -m two to four times")
    compare.add_argument("--blind", action="store_true",
                         help="show the answers as A, B, …, ask for a vote, then say which was which")
    compare.add_argument("--max-tokens", type=int, help="longest answer, in tokens")
    compare.add_argument("--temperature", type=float)
    compare.add_argument("--seed", type=int)
    compare.add_argument("prompt", help="what to ask; '-' reads it from standard input")

    providers = sub.add_parser("providers", help="cloud and remote endpoints (off until you add one)")
    psub = providers.add_subparsers(dest="providers_command", metavar="ACTION", required=True)
    plist = psub.add_parser("list", help="the providers you added, and the well-known ones")
    plist.add_argument("--json", action="store_true", help="machine-readable output")
    padd = psub.add_parser("add", help="add a provider: a well-known name (openai, anthropic, …) or any "
                           "OpenAI-compatible server with --base-url")
    padd.add_argument("name")
    padd.add_argument("--base-url", default="", help="its address, e.g. http://my-server:8000/v1")
    padd.add_argument("--kind", choices=("openai", "anthropic"), default="", help="the API it speaks")
    padd.add_argument("--own", action="store_true", help="it runs on your own hardware")
    padd.add_argument("--key-stdin", action="store_true", help="read its API key from standard input")
    pmodels = psub.add_parser("models", help="test a provider's address and key, and list its models")
    pmodels.add_argument("name")
    prm = psub.add_parser("rm", help="remove a provider and its key")
    prm.add_argument("name")

    serve = sub.add_parser("serve", help="let other apps use your models: an OpenAI-compatible API on this "
                           "computer (Ctrl+C stops it)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1: this computer only); "
                       "another address or 0.0.0.0 serves your network and needs a key")
    serve.add_argument("--port", type=int, help="port to listen on (default 4784, or the app's setting)")
    serve.add_argument("--model", metavar="ID", help="load this installed model now and keep it loaded")
    serve.add_argument("--ttl", type=float, metavar="SECONDS",
                       help="unload a model after this many idle seconds (default 600, or the app's setting)")
    serve.add_argument("--allow-cloud", action="append", default=[], metavar="PROVIDER",
                       help="also answer for this provider's models (PROVIDER/MODEL), sending those requests to "
                            "it; repeat for more (added to the app's setting; off by default)")
    serve.add_argument("--api-key-stdin", action="store_true",
                       help="read the API key clients must send from standard input (else the key kept "
                            "in the keyring, needed only on the network)")

    _docs_parser(sub)

    gui = sub.add_parser("gui", help="open the app (the same as no command)")
    gui.add_argument("--self-test", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _engine_parser() -> argparse.ArgumentParser:
    """`hearth engine …`: the app started again as the child that runs one model (core/engine.py).
    It is kept out of `hearth`'s own commands, where argparse would list it even with
    help=SUPPRESS (as "engine ==SUPPRESS==") and name it in "invalid choice" errors."""
    engine = argparse.ArgumentParser(prog="hearth engine", description="Internal: runs one model for the app.")
    engine.add_argument("--model", required=True)
    engine.add_argument("--port", type=int, required=True)
    engine.add_argument("--n-ctx", type=int, default=4096)
    engine.add_argument("--n-gpu-layers", type=int, default=0)
    engine.add_argument("--threads", type=int, default=0)
    engine.add_argument("--parent-pid", type=int, default=0)
    engine.add_argument("--chat-format", default="auto")
    engine.add_argument("--embedding", action="store_true")
    return engine


def _fail(message: str, code: int = 1) -> int:
    print(f"hearth: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, so a reader gone away is met below and not at exit
        return code
    except KeyboardInterrupt:  # Ctrl+C before a command's own handling (Hearth starting): no traceback
        return _fail("Stopped.", code=130)
    except RuntimeError as exc:
        # Ctrl+C landing while a class is being made (a dataclass field's __set_name__, during
        # imports) reaches here wrapped in a RuntimeError: it is still the user's Ctrl+C.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return _fail("Stopped.", code=130)
        raise
    except BrokenPipeError:
        # Whoever read the output went away (`hearth models list | head -1`): stop quietly, as
        # other command-line tools do (128 + SIGPIPE), with nothing left to flush at exit.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141


def _run(argv: list[str]) -> int:
    if argv[:1] == ["engine"]:
        args = _engine_parser().parse_args(argv[1:])
        from desktop.core.engine_server import serve

        return serve(model=args.model, port=args.port, api_key=os.environ.get("HEARTH_ENGINE_KEY", ""),
                     n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, n_threads=args.threads,
                     parent_pid=args.parent_pid, chat_format=args.chat_format,
                     embedding=args.embedding)
    args = _build_parser().parse_args(argv)
    if args.command in (None, "gui"):
        from desktop.app import run_app

        return run_app(self_test=args.self_test, quit_when_shown=args.quit_when_shown)

    from desktop.core.errors import HearthError
    from desktop.core.services import open_services, setup_logging

    try:
        services = open_services()
    except HearthError as exc:
        return _fail(str(exc))
    setup_logging(services.paths)
    try:
        if args.command == "chat":
            return _chat(services, args)
        if args.command == "compare":
            return _compare(services, args)
        if args.command == "providers":
            return _providers(services, args)
        if args.command == "serve":
            return _serve(services, args)
        if args.command == "docs":
            return _docs(services, args)
        return _models(services, args)
    except HearthError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        again = " Run the same command again to continue." if getattr(args, "models_command", "") == "pull" else ""
        return _fail(f"Stopped.{again}", code=130)
    finally:
        services.close()


def _prompt(args: argparse.Namespace) -> str:
    from desktop.core.errors import HearthError

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise HearthError("The prompt is empty.")
    return prompt


def _sampling(services, args: argparse.Namespace):
    overrides = {k: v for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature),
                                   ("seed", args.seed)) if v is not None}
    return replace(services.settings.sampling, **overrides)


def _tell_waits(chat) -> None:
    """A cloud provider's rate-limit or server-error wait, said on stderr while it lasts."""
    chat.on_wait = lambda seconds, why: print(f"hearth: waiting {seconds:.0f} s ({why})…", file=sys.stderr)


class _AnswerPrinter:
    """Writes an answer for a terminal or a pipe: the answer proper on stdout; a reasoning model's
    thinking on stderr, dimmed where stderr is a terminal, or (without --show-thinking) one line
    saying that it is thinking and, at the end, for how long.

    On a terminal the answer streams. Words that turn out to have been thinking (a server whose
    chat template opened the block sends only the `</think>`) are then followed by a note and the
    answer on a line of its own. To a pipe or a file only the final answer is written, whole."""

    DIM, PLAIN = "\033[2m", "\033[0m"

    def __init__(self, *, show_thinking: bool) -> None:
        self.show_thinking = show_thinking
        self.dim = sys.stderr.isatty()
        self.live = sys.stdout.isatty()
        self.thought = 0  # characters of thinking written
        self.printed = ""  # the answer as written to stdout
        self.said_thinking = False
        self.thinking_open = False  # thinking written to stderr that has no newline after it yet

    def _think(self, text: str) -> None:
        text = printable(text)
        sys.stderr.write(f"{self.DIM}{text}{self.PLAIN}" if self.dim else text)
        sys.stderr.flush()
        self.thinking_open = not text.endswith("\n")

    def _close_thinking(self) -> None:
        if self.thinking_open:
            sys.stderr.write("\n")
            self.thinking_open = False

    def __call__(self, live) -> None:
        thinking = live.thinking
        if live.phase == "thinking" or len(thinking) > self.thought:
            if self.show_thinking:
                if len(thinking) > self.thought:
                    self._think(thinking[self.thought:])
                    self.thought = len(thinking)
            elif not self.said_thinking:
                print("hearth: thinking…", file=sys.stderr, flush=True)
            self.said_thinking = True
        if not self.live:
            return
        answer = live.text
        if self.printed and not answer.startswith(self.printed):
            # What was shown as the answer was thinking after all.
            sys.stdout.write("\n")
            self._close_thinking()
            print("hearth: (the words above were the model's thinking; its answer follows)",
                  file=sys.stderr, flush=True)
            self.printed = ""
        if len(answer) > len(self.printed):
            self._close_thinking()
            sys.stdout.write(printable(answer[len(self.printed):]))
            sys.stdout.flush()
            self.printed = answer

    def end(self, answer) -> None:
        """After the answer is saved: what is left of it, and how it ended."""
        if self.show_thinking and answer.thinking[self.thought:]:
            self._think(answer.thinking[self.thought:])
        self._close_thinking()
        rest = answer.content[len(self.printed):] if answer.content.startswith(self.printed) else (
            "\n" + answer.content)
        if self.printed or rest:  # an answer that failed before its first word leaves stdout empty
            sys.stdout.write(printable(rest) + "\n")
            sys.stdout.flush()
        if answer.thinking_ms is not None:
            from desktop.core.reasoning import thinking_phrase

            print(f"hearth: {thinking_phrase(answer.thinking_ms).lower()}", file=sys.stderr)
            if not answer.content and answer.status == "complete":
                print("hearth: the model wrote no answer after its thinking.", file=sys.stderr)
        elif not answer.content and answer.status == "complete":
            print("hearth: the model wrote nothing. If that keeps happening, its chat format may be wrong: "
                  "see the model's Chat format in the app's settings.", file=sys.stderr)
        if answer.stop_reason == "length":
            print("hearth: stopped at the length limit (raise it with --max-tokens).", file=sys.stderr)


def _chat(services, args: argparse.Namespace) -> int:
    from desktop.core.compare import resolve

    prompt = _prompt(args)
    target = resolve(services, args.model)
    remote = services.providers.target(target)
    if remote is None:
        from desktop.core.library import ModelFileMissing

        try:
            record = services.library.require_file(services.library.resolve(args.model))
        except ModelFileMissing as exc:
            return _fail(f"{exc} (hearth models locate {exc.record.id} PATH, or hearth models rm {exc.record.id})")
        if record.for_embeddings:
            from desktop.core.model_kinds import not_for_chat

            return _fail(not_for_chat(record.name))
    if remote is not None:
        print(f"hearth: sending to {remote.provider.label} ({remote.provider.processed_on})", file=sys.stderr)
    _tell_waits(services.chat)
    show = _AnswerPrinter(show_thinking=args.show_thinking)
    services.chat.on_notice = lambda text: print(f"hearth: {text}", file=sys.stderr, flush=True)

    async def run() -> int:
        conversation = await services.chat.save(lambda: services.store.create_conversation(
            title="New chat",
            system_prompt=services.settings.system_prompt if args.system is None else args.system,
            sampling=asdict(_sampling(services, args)), model=target,
        ), "your message")
        refused = _use_documents(services, conversation.id, args)  # documents (issue 18)
        if refused:
            services.store.delete_conversation(conversation.id)  # nothing was asked: no empty chat kept
            return _fail(refused)
        task = asyncio.ensure_future(services.chat.send(conversation.id, prompt, on_text=show))
        try:
            answer = await task
        finally:
            await services.chat.close_documents()
            await services.engine.stop()
        show.end(answer)
        if answer.status == "error":
            return _fail(answer.error)
        _print_sources(answer)
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        services.engine.stop_now()
        sys.stdout.write("\n")
        return 130


def _use_documents(services, conversation_id: int, args: argparse.Namespace) -> str:
    """Documents (issue 18): attach --file and use --docs in the conversation; for a cloud model,
    passages go only with --send-documents. Returns the sentence that stops the chat, or ""."""
    if not (args.file or args.docs):
        return ""
    from desktop.core.errors import HearthError

    try:
        refused = services.chat.attach(conversation_id, args.file) if args.file else []
        if refused:
            return refused[0]
        if args.docs:
            services.chat.use_collections(conversation_id, args.docs)
    except HearthError as exc:  # DocumentError (a file it cannot read, no such collection), the index locked
        return str(exc)
    if services.chat.documents_consent_needed(conversation_id):
        if not args.send_documents:
            return ("The model is a cloud model: passages of your documents would be sent to it. "
                    "Add --send-documents to allow that, or use a local model.")
        services.chat.grant_documents_consent(conversation_id)
    return ""


def _print_sources(answer) -> None:
    """The sources the answer was given, on stderr after it (the answer alone on stdout stays
    clean for pipes, as with every other note): "Sources:" then "[1] report.pdf, page 3" lines,
    numbered as the prompt numbered them (the answer's [n] citations point at these)."""
    if not answer.sources:
        return
    from desktop.core.docs.context import where
    from desktop.core.text import shown

    lines = ["Sources:"] + [f"[{s['n']}] {shown(where(s))}" for s in answer.sources]
    print("\n".join(lines), file=sys.stderr, flush=True)


def request_line(entry) -> str:
    """One line of `hearth serve`'s request log for a RequestRecord: time, client address, route,
    model, status, tokens in→out, milliseconds. What a client wrote (its model name) is shown
    escaped, so it can neither forge a line nor send the terminal escape sequences."""
    import time

    from desktop.core.text import shown

    tokens = (f" {entry.tokens_in or 0}→{entry.tokens_out or 0} tokens"
              if entry.tokens_in is not None or entry.tokens_out is not None else "")
    where = f" via {entry.processed_on}" if entry.processed_on and entry.processed_on != "this machine" else ""
    return (f"hearth: {time.strftime('%H:%M:%S', time.localtime(entry.at))} {shown(entry.client.split(' ')[0])} "
            f"{entry.method} {shown(entry.path)} {shown(entry.model[:200]) or '-'} {entry.status}{tokens}{where} "
            f"{entry.duration_ms:.0f} ms")


def _serve(services, args: argparse.Namespace) -> int:
    """`hearth serve`: the local API server in the foreground until Ctrl+C (or SIGTERM), which
    stops it cleanly (exit 0). The address goes to stdout, the rest (an example, the request log)
    to stderr. A network address without a key, a port in use or a model not installed: one
    sentence, exit 2 (1 for the model)."""
    import signal

    from desktop.core import net, secrets
    from desktop.core.server import KEY_NAME, LocalServer, ServerConfig, ServerError
    from desktop.core.server.app import is_loopback_host

    saved = services.settings.server
    host = args.host or ("0.0.0.0" if saved.network else "127.0.0.1")
    port = saved.port if args.port is None else args.port
    loopback = is_loopback_host(host)
    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
        if not key:
            return _fail("No API key came on standard input.", code=2)
        if len(key) < 12:
            return _fail("That API key is too short to keep anyone out: use at least 12 characters (for "
                         "example from: python -c 'import secrets; print(secrets.token_urlsafe(24))').", code=2)
    else:
        key = "" if loopback else (secrets.get(KEY_NAME) or "")
    if not loopback and not key:
        return _fail(f"Serving on the network ({host}) needs an API key, so that only the apps you give it to "
                     "can use your models: pass one with --api-key-stdin.", code=2)
    if args.ttl is not None and args.ttl < 0:
        return _fail("--ttl is a number of seconds, 0 or more.", code=2)
    for name in args.allow_cloud:
        services.providers.get(name)  # ProviderSetupError (a sentence) for a provider not added
    config = ServerConfig(host=host, port=port, api_key=key, origins=saved.origins,
                          ttl_s=saved.ttl_s if args.ttl is None else args.ttl, log_bodies=saved.log_bodies,
                          cloud=tuple(dict.fromkeys([*saved.cloud, *args.allow_cloud])))
    server = LocalServer(services, config)

    server.on_request = lambda entry: print(request_line(entry), file=sys.stderr, flush=True)

    async def run() -> int:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopping.set)
            except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C arrives as KeyboardInterrupt
                pass
        try:
            await server.start()
        except ServerError as exc:
            return _fail(str(exc), code=2)
        try:
            if args.model:
                print(f"hearth: loading {args.model}…", file=sys.stderr, flush=True)
                preload = asyncio.ensure_future(_preload(server, args.model))
                await asyncio.wait([preload, asyncio.ensure_future(stopping.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
                if not preload.done():
                    preload.cancel()
                    return 0
                if preload.exception() is not None:
                    return _fail(str(preload.exception()))
            base = server.address
            auth = " -H 'Authorization: Bearer YOUR_KEY'" if key else ""
            chosen = server.pool.model(args.model) if args.model else next(iter(services.library.chat_models()), None)
            model = chosen.id if chosen is not None else "MODEL_ID"
            print(base, flush=True)
            print(f"hearth: serving your models at {base}/v1 (OpenAI API){'' if loopback else ' to your network'}; "
                  "Ctrl+C stops.", file=sys.stderr)
            if not loopback and host in ("0.0.0.0", "::") and (lan := net.lan_address()):
                print(f"hearth: other computers reach it at http://{lan}:{server.port}/v1", file=sys.stderr)
            if chosen is not None and chosen.for_embeddings:  # it cannot chat: the request it answers
                print(f"hearth: try: curl {base}/v1/embeddings -H 'Content-Type: application/json'{auth} "
                      f"-d '{{\"model\": \"{model}\", \"input\": \"Hello\"}}'", file=sys.stderr, flush=True)
            else:
                print(f"hearth: try: curl {base}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
                      f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": "
                      "\"Hello\"}]}'", file=sys.stderr, flush=True)
            for name in config.cloud:
                provider = services.providers.find(name)
                if provider is not None:
                    where = "a server on this computer" if provider.on_this_machine else provider.host
                    print(f"hearth: requests for {name}/… models are sent to {provider.label} ({where}); your "
                          "own models' requests stay on this computer.", file=sys.stderr, flush=True)
            await stopping.wait()
            print("hearth: stopping…", file=sys.stderr, flush=True)
            return 0
        finally:
            await server.stop()

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


async def _preload(server, model_ref: str) -> None:
    """Load a model for `hearth serve --model` and keep it loaded while the server runs; an
    embedding model in llama.cpp's embedding mode, where /v1/embeddings and /api/embed find it."""
    from desktop.core.errors import HearthError

    try:
        embedding = server.pool.model(model_ref).for_embeddings
        async with server.pool.use(model_ref, ttl_s=-1, embedding=embedding):
            pass
    except HearthError as exc:
        raise HearthError(str(exc)) from None


def _models(services, args: argparse.Namespace) -> int:
    from desktop.core.units import human_bytes, human_count

    library = services.library
    if args.models_command == "list":
        from desktop.core.library import file_problem
        from desktop.core.text import shown

        models = library.models()
        if args.json:
            print(json.dumps([dict(asdict(m), file_problem=file_problem(m),
                                   kind="embedding" if m.for_embeddings else "chat") for m in models], indent=2))
            return 0
        if not models:
            print("No models installed. Add one with: hearth models import PATH.gguf")
            return 0
        rows = [("ID", "NAME", "KIND", "PARAMS", "QUANT", "SIZE", "CONTEXT", "ORIGIN")]
        rows += [(m.id, shown(m.name), "embedding" if m.for_embeddings else "chat", human_count(m.parameters),
                  shown(m.quantization), human_bytes(m.size), str(m.context_length or "?"),
                  m.origin + (f" · {file_problem(m)}" if file_problem(m) else ""))
                 for m in models]
        _print_table(rows)
        missing = [m for m in models if file_problem(m)]
        if missing:
            print(f"hearth: {len(missing)} model{'s' if len(missing) > 1 else ''} cannot be used: find the file "
                  "again with `hearth models locate ID PATH`, or remove it with `hearth models rm ID`.",
                  file=sys.stderr)
        return 0
    if args.models_command == "found":
        return _found(services, args)
    if args.models_command == "locate":
        from desktop.core.text import shown

        record = library.locate(args.id, args.path)
        print(f"Found {shown(record.name)} again at {shown(record.path)}.")
        return 0
    if args.models_command == "info":
        if "/" in args.id and not any(m.id == args.id for m in library.models()):
            return _hub_info(args)
        from desktop.core import gguf, templates
        from desktop.core.library import file_problem
        from desktop.core.text import shown

        record = library.get(args.id)
        details = dict(asdict(record), kind="embedding" if record.for_embeddings else "chat",
                       file_problem=file_problem(record))
        try:
            if details["file_problem"]:  # never opened: it may now be a pipe or a device
                raise gguf.GGUFError(f"{details['file_problem']}: {record.path}.")
            info = gguf.read_info(record.path)
            details["prompt_format"] = templates.describe(info.chat_template, info.architecture,
                                                          info.markup_tokens, record.chat_format)
        except gguf.GGUFError as exc:
            details["problem"] = str(exc)
        if args.json:
            print(json.dumps(details, indent=2))
            return 0
        for key, value in details.items():
            print(f"{key:18} {shown(str(value))}")
        return 0
    if args.models_command == "search":
        from desktop.core import hub

        found = asyncio.run(hub.search(args.query, endpoint_url=hub.endpoint(args.endpoint), token=_hub_token(),
                                       sort=args.sort, limit=args.limit))
        if args.json:
            print(json.dumps([asdict(r) for r in found], indent=2))
        elif not found:
            print(f"No GGUF models found for “{args.query}”.")
        for r in found if not args.json else []:
            gated = "  (gated)" if r.gated else ""
            print(f"{r.id}  ·  {r.downloads:,} downloads  ·  {r.likes:,} likes{gated}")
        return 0
    if args.models_command == "pull":
        from desktop.core import hub
        from desktop.core.downloads import pull

        record = asyncio.run(pull(library, args.ref, endpoint_url=hub.endpoint(args.endpoint),
                                  token=_hub_token(), on_progress=_download_printer()))
        print(f"Downloaded {record.name} ({record.quantization}, {human_bytes(record.size)}) as “{record.id}”.")
        return 0
    if args.models_command == "import":
        from desktop.core import elsewhere
        from desktop.core.text import shown

        label = (elsewhere.ollama_name(args.path) or None) if args.link else None  # Ollama's blobs: no name
        record = library.import_file(args.path, link=args.link, progress=_progress_printer(), label=label)
        print(f"Added {shown(record.name)} ({record.quantization}, {human_bytes(record.size)}) as “{record.id}”.")
        return 0
    if args.models_command == "rm":
        from desktop.core.errors import HearthError

        try:
            record, freed = library.remove(args.id)
        except HearthError as exc:
            return _fail(f"Nothing was removed. {exc}")
        note = f", freed {human_bytes(freed)}" if freed else " (the linked file was left where it is)"
        from desktop.core.text import shown

        print(f"Removed {record.id} ({shown(record.name)}){note}.")
        return 0
    raise AssertionError(args.models_command)


def _width(text: str) -> int:
    """Columns a terminal gives `text`: East Asian wide letters take two, combining marks none."""
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """Rows as aligned columns; cells must already be printable (text.shown)."""
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())


def _found(services, args: argparse.Namespace) -> int:
    """`hearth models found`: what the models page's "Look for them" finds, and what it skipped."""
    from desktop.core import elsewhere
    from desktop.core.text import shown
    from desktop.core.units import human_bytes

    known = {Path(m.path): m.id for m in services.library.models()}
    scan = elsewhere.scan(known)
    if args.json:
        print(json.dumps({
            "found": [{"app": f.app, "name": f.name, "path": str(f.path), "size": f.size,
                       "architecture": f.architecture, "quantization": f.quantization,
                       "in_hearth": f.in_hearth} for f in scan.found],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in scan.skipped],
        }, indent=2))
        return 0
    if not scan.found:
        print("No GGUF models from other apps were found on this computer.")
    else:
        rows = [("APP", "NAME", "SIZE", "IN HEARTH", "PATH")]
        rows += [(f.app, shown(f.name), human_bytes(f.size), f.in_hearth or "no", shown(str(f.path)))
                 for f in scan.found]
        _print_table(rows)
        if scan.new:
            print("Add one without copying it: hearth models import --link PATH")
    if args.verbose:
        for s in scan.skipped:
            print(f"skipped {shown(str(s.path))}: {s.reason}")
    elif scan.skipped:
        for s in scan.skipped:
            if s.cut:
                print(f"hearth: {shown(s.reason)}.", file=sys.stderr)
        print(f"hearth: {len(scan.skipped)} entr{'ies were' if len(scan.skipped) > 1 else 'y was'} skipped "
              "(--verbose says which and why).", file=sys.stderr)
    return 0


def _hub_token() -> str | None:
    from desktop.core import secrets

    return secrets.hub_token()


def _hub_info(args: argparse.Namespace) -> int:
    """A hub repository's quantizations, sizes and whether each runs here."""
    from desktop.core import fit, hub, runtime
    from desktop.core.units import human_bytes

    endpoint, token = hub.endpoint(args.endpoint), _hub_token()
    files = asyncio.run(hub.repo_files(args.id, endpoint_url=endpoint, token=token))
    head = None
    if files.variants:
        try:
            head = asyncio.run(hub.read_head(endpoint, files.repo, files.revision, files.variants[0].files[0].name,
                                             token=token))
        except Exception:  # noqa: BLE001 - the estimate then leaves the context out
            head = None
    kv = head.kv_cache_bytes(args.context) if head is not None and head.layers else None
    machine = fit.Machine.here()
    fits, best = fit.assess_variants(files.variants, kv, machine)
    rows = [{"quantization": v.quantization, "files": [f.name for f in v.files], "size": v.size,
             "needs": fits[v.quantization][1].memory.total, "fit": fits[v.quantization][1].label,
             "recommended": v.quantization == best} for v in files.variants]
    architecture = head.architecture if head is not None else ""
    if args.json:
        print(json.dumps({"repo": files.repo, "revision": files.revision, "license": files.license,
                          "gated": files.gated, "architecture": architecture, "context": args.context,
                          "variants": rows}, indent=2))
        return 0
    print(f"{files.repo}  ·  licence {files.license or 'not stated'}"
          f"{'  ·  architecture ' + architecture if architecture else ''}{'  ·  gated' if files.gated else ''}")
    if architecture and runtime.knows_architecture(architecture) is False:
        print(runtime.unknown_architecture_reason(architecture, files.repo))
    context = f"a context of {args.context:,} tokens" if kv is not None else "no context (its size is unknown)"
    print(f"Memory needed with {context}; this computer: {human_bytes(machine.ram_free)} of "
          f"{human_bytes(machine.ram_total)} RAM free.")
    for r in rows:
        star = "  ★ recommended" if r["recommended"] else ""
        parts = f"  ({len(r['files'])} files)" if len(r["files"]) > 1 else ""
        print(f"  {r['quantization']:<10} {human_bytes(r['size']):>9}   needs {human_bytes(r['needs']):>9}   "
              f"{r['fit']}{star}{parts}")
    return 0


def _figures_table(rows: list[tuple[str, object]]) -> list[str]:
    """The per-answer figures as aligned text lines."""
    from desktop.core.units import human_bytes

    header = ("", "first words", "tokens/s", "tokens in/out", "cost", "where the words went")
    table = [header]
    for label, m in rows:
        table.append((
            label,
            f"{m.ttft_ms / 1000:.2f} s" if m.ttft_ms else "–",
            f"{m.tokens_per_s:.1f}" if m.tokens_per_s else "–",
            f"{m.tokens_in or 0} / {m.tokens_out or 0}" + (" (est.)" if m.usage_estimated else ""),
            "unknown" if m.cost_unknown else f"${m.cost:.4f}",
            f"{human_bytes(m.bytes_sent)} sent to {m.processed_on}" if m.left_the_machine else "stayed on this machine",
        ))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _compare(services, args: argparse.Namespace) -> int:
    from desktop.core.compare import LETTERS, CompareSession

    prompt = _prompt(args)
    for target in args.targets:
        if services.providers.target(target) is None and services.library.resolve(target).for_embeddings:
            from desktop.core.model_kinds import not_for_chat

            return _fail(not_for_chat(services.library.resolve(target).name))
    session = CompareSession.create(services, args.targets, blind=args.blind)
    sampling = asdict(_sampling(services, args))
    for conversation_id in session.comparison.conversations:
        services.store.update_conversation(conversation_id, sampling=sampling)
    for chat in session.chats:
        _tell_waits(chat)

    async def run():
        try:
            return await session.ask(prompt)
        finally:
            await session.close()

    try:
        answers = asyncio.run(run())
    except KeyboardInterrupt:
        for engine in session.engines:
            engine.stop_now()
        return _fail("Stopped.", code=130)
    for i, answer in enumerate(answers):
        print(f"── {session.label(i)} " + "─" * max(4, 60 - len(session.label(i))))
        print(answer.content if answer.content else "")
        if answer.status != "complete":
            print(f"[{answer.status}{': ' + answer.error if answer.error else ''}]")
        print()
    for line in _figures_table([(session.label(i), a) for i, a in enumerate(answers)]):
        print(line)
    if args.blind:
        letters = LETTERS[:len(answers)]
        print(f"\nWhich answer is better? {', '.join(letters)}, tie, or bad (Enter to skip): ", end="", flush=True)
        choice = sys.stdin.readline().strip()
        vote = {c.lower(): c for c in (*letters, "tie", "bad")}.get(choice.lower())
        if vote:
            session.vote(vote)
        elif choice:
            print(f"hearth: “{choice}” is not a vote; none recorded.", file=sys.stderr)
        print("\n" + "\n".join(f"{LETTERS[i]} was {t}" for i, t in enumerate(session.comparison.targets)))
    print(f"\nSaved as comparison {session.comparison.id}.")
    return 0 if all(a.status == "complete" for a in answers) else 1


def _providers(services, args: argparse.Namespace) -> int:
    from desktop.core import cloud, secrets

    registry = services.providers
    if args.providers_command == "list":
        added = registry.all()
        if args.json:
            print(json.dumps({"added": [dict(asdict(p), base_url=secrets.redact(p.base_url), has_key=bool(p.key))
                                        for p in added],
                              "well_known": [p.name for p in cloud.presets()]}, indent=2))
            return 0
        if not added:
            print("No providers: everything stays on this machine.")
        for p in added:
            key = "key set" if p.key else ("no key needed" if p.on_this_machine or p.own else "no key yet")
            print(secrets.redact(f"{p.name:<12} {p.label:<24} {p.base_url}  ({key}; words go to {p.processed_on})"))
        print("Well-known: " + ", ".join(p.name for p in cloud.presets()))
        return 0
    if args.providers_command == "add":
        key = sys.stdin.readline().strip() if args.key_stdin else ""
        if args.key_stdin and not key:
            return _fail("No key arrived on standard input.")
        carried = cloud.clean_address(args.base_url or "").carried
        provider = registry.add(args.name, base_url=args.base_url, kind=args.kind, own=args.own or None, key=key)
        where = ""
        if key or carried:
            taken = f" The key in the address ({carried}) was taken out of it, never saved in a file." if carried else ""
            where = taken + (" Key kept in the system keyring." if not secrets.in_memory_only(provider.name) else
                             " This computer has no keyring: the key was NOT saved and lasts only for this "
                             f"command; set {secrets.env_name(provider.name)} instead.")
        leaves = ("it runs on this machine." if provider.on_this_machine else
                  f"prompts you send to it leave this machine for {provider.host}.")
        print(secrets.redact(f"Added {provider.label} ({provider.base_url}): {leaves}{where}"))
        return 0
    if args.providers_command == "models":
        provider = registry.get(args.name)
        names = asyncio.run(cloud.list_models(provider))
        print("\n".join(names) if names else f"{provider.label} lists no models.")
        return 0
    if args.providers_command == "rm":
        provider = registry.remove(args.name)
        print(f"Removed {provider.label} and its key.")
        return 0
    raise AssertionError(args.providers_command)


def _download_printer():
    """Progress on stderr: a line that rewrites itself on a terminal, else a line every 10 %."""
    from desktop.core.units import human_bytes

    last = [-1]

    def show(p) -> None:
        if p.notice:  # e.g. the file changed on the hub since the pull was stopped
            sys.stderr.write(("\r" if sys.stderr.isatty() else "") + f"hearth: {p.notice}\n")
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        line = (f"{human_bytes(p.done)} of {human_bytes(p.total)} ({p.done * 100 // max(p.total, 1)} %), "
                f"{human_bytes(p.bytes_per_s)}/s{eta}")
        if sys.stderr.isatty():
            sys.stderr.write("\r  " + line.ljust(70) + ("\n" if p.done >= p.total else ""))
        elif p.done * 10 // max(p.total, 1) != last[0]:
            last[0] = p.done * 10 // max(p.total, 1)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _progress_printer():
    if not sys.stderr.isatty():
        return None
    from desktop.core.units import human_bytes

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r  {human_bytes(done)} of {human_bytes(total)}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


# -- hearth docs: collections of documents, indexed for search (issue 18) ----------------------
def _docs_parser(sub) -> None:
    """`hearth docs add | list | rm | search`."""
    docs = sub.add_parser("docs", help="collections of your documents, indexed on this computer for search and chat")
    dsub = docs.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    dadd = dsub.add_parser("add", help="add files and folders to a collection and index them (Ctrl+C stops; "
                           "run it again to continue)")
    dadd.add_argument("paths", nargs="+", metavar="PATH")
    dadd.add_argument("--collection", default=None, metavar="NAME", help="the collection (default: default)")
    dlist = dsub.add_parser("list", help="collections with their files, passages and failures")
    dlist.add_argument("--collection", metavar="NAME", help="list this collection's files, their state and reason")
    dlist.add_argument("--json", action="store_true")
    drm = dsub.add_parser("rm", help="remove a collection from the index (your files are not touched)")
    drm.add_argument("name")
    dsearch = dsub.add_parser("search", help="the passages that best answer QUERY, with file, page and score")
    dsearch.add_argument("query")
    dsearch.add_argument("--collection", action="append", default=None, metavar="NAME",
                         help="search this collection (repeat for more; default: all)")
    dsearch.add_argument("--limit", type=int, default=8, metavar="N", help="at most N passages (default 8)")
    dsearch.add_argument("--json", action="store_true")


def _docs(services, args: argparse.Namespace) -> int:
    """`hearth docs …`: the documents index (documents.db in the data folder)."""
    from desktop.core.docs import DEFAULT_COLLECTION
    from desktop.core.docs.index import DocumentIndex

    index = DocumentIndex(services.paths.data / "documents.db")
    try:
        if args.docs_command == "add":
            return _docs_add(services, index, args.paths, args.collection or DEFAULT_COLLECTION)
        if args.docs_command == "list":
            return _docs_list(index, args)
        if args.docs_command == "rm":
            files = index.remove(args.name)
            print(f"Removed the collection “{shown_name(args.name)}” ({files} files) from the index; "
                  "the files themselves are untouched.")
            return 0
        return _docs_search(services, index, args)
    finally:
        index.close()


def shown_name(text: str) -> str:
    from desktop.core.text import shown

    return shown(text)


def _docs_add(services, index, paths: list[str], collection: str) -> int:
    from desktop.core.docs.embedder import find_embedder
    from desktop.core.docs.index import HIDDEN_PREFIX
    from desktop.core.docs.indexer import Indexer

    if collection.startswith(HIDDEN_PREFIX):
        return _fail(f"A collection's name cannot start with “{HIDDEN_PREFIX}” (those are the chats' own).", code=2)
    added = index.add(paths, collection)
    for path, reason in added.skipped:
        print(f"hearth: skipped {shown_name(path)}: {reason}", file=sys.stderr)
    if not added.added and not added.known:
        return _fail(f"Nothing to index: none of the paths given holds a file Hearth reads ({extract_kinds()}).")
    print(f"hearth: {_count(len(added.added), 'new file')} in “{shown_name(collection)}”"
          + (f", {len(added.known)} already there" if added.known else ""), file=sys.stderr)
    embedder = find_embedder(services)
    if embedder is None:
        print("hearth: no embedding model is installed: search will use keywords only", file=sys.stderr)
    else:
        print(f"hearth: vectors from {shown_name(embedder.model.name)}", file=sys.stderr)

    async def run(embedder):
        try:
            return await Indexer(index, embedder).run(collection, progress=_docs_progress_printer())
        finally:
            if embedder is not None:
                await embedder.close()

    from desktop.core.docs.embedder import EmbedderError

    try:
        try:
            result = asyncio.run(run(embedder))
        except EmbedderError as exc:  # the model would not load or stopped: the words can still be found
            print(f"hearth: {exc} Going on with keywords only.", file=sys.stderr)
            result = asyncio.run(run(None))
    except KeyboardInterrupt:
        return _fail("Stopped. Run the same command again to continue; what is indexed stays.", code=130)
    found = index.collection(collection)
    print(f"Indexed {_count(result.indexed, 'file')} ({_count(result.passages, 'passage')}, "
          f"{_count(result.pages, 'page')}) in {result.seconds:.1f} s; “{shown_name(collection)}” has "
          f"{_count(found.files, 'file')} and {_count(found.passages, 'passage')}.")
    failed = [f for f in index.files(collection) if f.state == "failed"]
    for entry in failed:
        print(f"hearth: failed: {shown_name(entry.path)}: {entry.reason}", file=sys.stderr)
    given = {str(Path(x).expanduser()) for x in paths} | {str(Path(x).expanduser().resolve()) for x in paths}
    refused = [path for path, _ in added.skipped if path in given]  # a path asked for by name (a typo, .xlsx)
    return 1 if result.failed or refused else 0


def _count(n: int, noun: str) -> str:
    """"1 file", "2 files", "1,024 passages"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def extract_kinds() -> str:
    """The kinds of files documents are read from, in words (extract.READS)."""
    from desktop.core.docs.extract import READS

    return READS


def _docs_progress_printer():
    """Indexing progress on stderr: a line that rewrites itself on a terminal, else a line at
    every tenth of the files."""
    last = [-1]

    def show(p) -> None:
        left = f", {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
        line = (f"{p.files_done} of {p.files_total} files, {p.pages} pages, {p.passages} passages{left}"
                + (f", {p.failed} failed" if p.failed else ""))
        if sys.stderr.isatty():
            current = f"  {os.path.basename(p.current)}" if p.current else ""
            sys.stderr.write("\r  " + (line + shown_name(current))[:100].ljust(100)
                             + ("\n" if p.files_done >= p.files_total else ""))
        elif p.files_done * 10 // max(p.files_total, 1) != last[0]:
            last[0] = p.files_done * 10 // max(p.files_total, 1)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _docs_list(index, args: argparse.Namespace) -> int:
    if args.collection is not None:
        index.collection(args.collection)  # a sentence when there is none
        files = index.files(args.collection)
        if args.json:
            print(json.dumps([dict(asdict(f), name=f.name) for f in files], indent=2))
            return 0
        rows = [("STATE", "PAGES", "PASSAGES", "FILE", "REASON")]
        rows += [(f.state, str(f.pages or ""), str(f.passages), shown_name(f.path), shown_name(f.reason))
                 for f in files]
        _print_table(rows)
        return 0
    from desktop.core.docs.context import is_hidden

    collections = [c for c in index.collections() if not is_hidden(c.name)]  # not a chat's own attached files
    if args.json:
        print(json.dumps([asdict(c) for c in collections], indent=2))
        return 0
    if not collections:
        print("No collections yet. Add files or folders with: hearth docs add PATH… [--collection NAME]")
        return 0
    rows = [("COLLECTION", "FILES", "PASSAGES", "FAILED", "WAITING", "SEARCH")]
    rows += [(shown_name(c.name), str(c.files), str(c.passages), str(c.failed), str(c.waiting),
              f"keywords + vectors ({shown_name(c.embed_model)})" if c.embed_model else "keywords")
             for c in collections]
    _print_table(rows)
    return 0


def _docs_search(services, index, args: argparse.Namespace) -> int:
    from desktop.core.docs.embedder import find_embedder
    from desktop.core.text import printable

    if args.limit < 1:
        return _fail("--limit must be a whole number above 0.", code=2)
    names = args.collection
    searched = [c for c in index.collections() if names is None or c.name in names]
    embedder = find_embedder(services)
    if embedder is None:
        print("hearth: keywords only: no embedding model is installed (install one, such as nomic-embed-text, "
              "to search by meaning)", file=sys.stderr)
    vector = None
    if embedder is not None and any(c.embed_model == embedder.model_id for c in searched):
        async def query_vector():
            try:
                return await embedder.embed_query(args.query)
            finally:
                await embedder.close()

        vector = asyncio.run(query_vector())
    results = index.search(args.query, collections=names, limit=args.limit, vector=vector,
                           model=embedder.model_id if embedder is not None else None)
    if embedder is not None and vector is None:
        print(f"hearth: keywords only: these documents have no vectors from {shown_name(embedder.model.name)} yet "
              "(run hearth docs add PATH again to add them)", file=sys.stderr)
    elif results.note and embedder is not None:
        print(f"hearth: {results.note}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"file": p.path, "name": p.name, "page": p.page, "heading": p.heading, "text": p.text,
                           "score": p.score, "collection": p.collection, "id": p.id, "mode": results.mode}
                          for p in results.passages], indent=2))
        return 0
    if not results.passages:
        print("Nothing found.", file=sys.stderr)
        return 0
    for rank, p in enumerate(results.passages, start=1):
        text = " ".join(printable(p.text).split())
        print(f"{rank}. {shown_name(p.where())}  (score {p.score:.4g}, {shown_name(p.collection)})")
        print(f"   {text[:400]}{'…' if len(text) > 400 else ''}")
    return 0
