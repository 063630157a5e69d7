"""Runs one local model at a time in a child process and says, in words, when that goes wrong.

The child is llama-cpp-python's OpenAI-compatible server (see engine_server.py) on 127.0.0.1,
a free port and a fresh random API key. A crash in llama.cpp kills only the child.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from desktop.core import gguf, hardware, net, runtime, templates
from desktop.core.errors import HearthError
from desktop.core.paths import Paths
from desktop.core.providers import Endpoint
from desktop.core.settings import LoadOptions
from desktop.core.store import THIS_MACHINE, ModelRecord
from desktop.core.units import human_bytes

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 900.0  # a large model on a slow disk takes minutes; a hung child does not get forever


class EngineError(HearthError):
    pass


def engine_command() -> list[str]:
    """How to start the engine child: the frozen app starts itself, a source install runs -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "engine"]
    return [sys.executable, "-m", "desktop", "engine"]


# What the engine child sees of the app's environment: what Python, llama.cpp and the frozen app
# need to start, find their libraries and the GPU, and honour the user's tuning. Cloud keys and hub
# tokens (HF_TOKEN, HEARTH_KEY_*, OPENAI_API_KEY…) never reach a process that runs a model file.
ENGINE_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "USERNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "HEARTH_HOME", "PYTHONPATH", "PYTHONHOME", "PYTHONUTF8", "PYTHONIOENCODING", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "LIBPATH", "SHLIB_PATH",
    # Windows: a process started without these cannot load DLLs, find its fonts or temp folder.
    "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE", "APPDATA", "LOCALAPPDATA",
    "PROGRAMDATA", "PROGRAMFILES", "PROGRAMFILES(X86)", "PROGRAMW6432", "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE", "PROCESSOR_IDENTIFIER", "OS",
})
ENGINE_ENV_PREFIXES = ("LC_", "DYLD_", "CUDA_", "GGML_", "LLAMA_", "OMP_", "KMP_", "GOMP_", "OPENBLAS_",
                       "MKL_", "HIP_", "ROCR_", "HSA_", "VK_", "SYCL_", "ONEAPI_", "_PYI_")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)


def engine_environment(source: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the engine child starts with: only the names above, never one that
    looks like it holds a secret."""
    env = {}
    for name, value in (os.environ if source is None else source).items():
        upper = name.upper()
        if (upper in ENGINE_ENV_NAMES or upper.startswith(ENGINE_ENV_PREFIXES)) and not SECRET_NAME.search(upper):
            env[name] = value
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LoadPlan:
    """What will be loaded and how, after the checks that need no child process."""

    model: ModelRecord
    info: gguf.GGUFInfo
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    memory: hardware.MemoryEstimate


def plan_load(model: ModelRecord, options: LoadOptions, *, releasable: int = 0) -> LoadPlan:
    """Check the file and the memory it needs before any child is started."""
    path = Path(model.path)
    if not path.exists():
        raise EngineError(f"The file for “{model.name}” is missing: {path}. It may have been moved "
                          "or deleted: find it again with Locate… in Models (or hearth models locate ID PATH), "
                          "or remove the model.")
    info = gguf.read_info(path)
    if runtime.knows_architecture(info.architecture) is False:
        raise EngineError(runtime.unknown_architecture_reason(info.architecture, model.name))
    n_ctx = options.n_ctx if options.n_ctx > 0 else 4096  # (server.pool.context_for says the same, from the record)
    if info.context_length:
        n_ctx = min(n_ctx, info.context_length)
    memory = hardware.estimate_memory(info.file_size, info.kv_cache_bytes(n_ctx))
    total = hardware.total_memory()
    if memory.total > total:
        raise EngineError(
            f"“{model.name}” needs about {memory.explain()}, but this computer has "
            f"{human_bytes(total)} of memory in all. Choose a smaller quantization of this model, "
            "or a smaller model."
        )
    free = hardware.available_memory() + releasable
    if memory.total > free:
        raise EngineError(
            f"“{model.name}” needs about {memory.explain()}, but only {human_bytes(free)} of memory "
            "is free now. Close other apps, or lower the context length, then try again."
        )
    threads = options.n_threads if options.n_threads > 0 else hardware.physical_cores()
    return LoadPlan(model=model, info=info, n_ctx=n_ctx, n_gpu_layers=options.n_gpu_layers,
                    n_threads=threads, memory=memory)


def _known_format(plan: LoadPlan) -> str:
    """The known format found from the model file: what replaces a template that had to be killed."""
    return templates.detect(plan.info.architecture, plan.info.markup_tokens).format.name


def explain_exit(log_text: str, returncode: int | None, model_name: str) -> str:
    """Turn the child's last words and exit status into a sentence."""
    if templates.HUNG_LOG in log_text:
        return (f"The chat template of “{model_name}” ran on past its time limit, so Hearth stopped the "
                "engine. From the next message on, this model uses a known format instead (its Chat format "
                "setting).")
    if re.search(r"tensor '[^']*' has offset \d+, expected \d+|tensor data is not within the file bounds|"
                 r"failed to read tensor info|invalid ggml type", log_text):
        return (f"“{model_name}” is damaged: llama.cpp found its tensors where they cannot be. The file "
                "was changed after it was made (a disk or copy error); download it again.")
    arch = re.search(r"unknown model architecture: '([^']+)'", log_text)
    if arch:
        return runtime.unknown_architecture_reason(arch.group(1), model_name)
    if re.search(r"out of memory|failed to allocate|unable to allocate|std::bad_alloc|"
                 r"cannot allocate memory", log_text, re.IGNORECASE):
        return (f"There was not enough memory to load “{model_name}”. Close other apps, lower "
                "the context length, or choose a smaller model.")
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            return (f"The engine running “{model_name}” was killed ({name}), perhaps by the system "
                    "because memory ran out.")
        return f"The engine running “{model_name}” stopped unexpectedly ({name})."
    llama_lines = [ln.strip() for ln in log_text.splitlines()
                   if re.search(r"error|failed|exception", ln, re.IGNORECASE)]
    detail = f" llama.cpp said: “{llama_lines[-1][:300]}”" if llama_lines else ""
    return f"llama.cpp could not load “{model_name}” (the engine exited with code {returncode}).{detail}"


class Engine:
    """The local model engine: one child process, loaded with one model at a time."""

    def __init__(self, paths: Paths, on_state: Callable[[str, str], None] | None = None, *,
                 log_name: str = "engine", embedding: bool = False) -> None:
        """`log_name`: the child's log file in the logs folder (`<log_name>.log`); each engine
        running beside another (the local server's) needs its own. `embedding`: the child runs
        llama.cpp in embedding mode (it answers /v1/embeddings, not chat)."""
        self.paths = paths
        self.embedding = embedding
        self.on_state = on_state  # (state, detail): stopped, loading, ready, failed, crashed
        self.state = "stopped"
        self.state_detail = ""  # the sentence that came with the state ("… loaded in 1.2 s")
        self.plan: LoadPlan | None = None
        self.options: LoadOptions | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._api_key = ""
        self._log_path = self._own_log_path = paths.logs / f"{log_name}.log"
        self._lock = asyncio.Lock()
        # Set by the local server's pool (server/pool.py), so one model is never loaded twice or
        # kept idle at the cost of another: `donor(model, options)` hands over an idle engine that
        # already holds the model (None: none), `make_room()` unloads idle engines, True if any.
        self.donor: Callable[[ModelRecord, LoadOptions], Engine | None] | None = None
        self.make_room: Callable[[], Awaitable[bool]] | None = None
        # What the engine said of its prompts (GET /hearth/v1/info): the format in use, whether
        # the system prompt is folded into the first message, and a notice for the user.
        self.prompt_info: dict = {}
        self.notice_pending = ""  # the notice, until someone has shown it
        self._hung_templates: set[str] = set()  # model files whose template had to be killed
        # Told (model, known format) when a template had to be killed, so the choice outlives this run.
        self.on_template_hung: Callable[[ModelRecord, str], None] | None = None

    # -- state --------------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "") -> None:
        self.state, self.state_detail = state, detail
        if self.on_state:
            self.on_state(state, detail)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def model(self) -> ModelRecord | None:
        return self.plan.model if self.plan else None

    @property
    def n_ctx(self) -> int:
        return self.plan.n_ctx if self.plan else 0

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def endpoint(self) -> Endpoint:
        if not self.is_alive() or not self.plan:
            raise EngineError("No model is loaded.")
        # Hearth's own streaming route (see engine_server.py); the OpenAI routes stay for other apps.
        return Endpoint(base_url=f"http://127.0.0.1:{self._port}/hearth/v1", api_key=self._api_key,
                        model="local", provider="local", processed_on=THIS_MACHINE, local=True)

    def log_tail(self, limit: int = 20_000) -> str:
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> str | None:
        """If the loaded model's child has died since it was ready, say why (once) and mark it."""
        if self.state == "ready" and self._proc is not None and self._proc.poll() is not None:
            message = self.death_message()
            self._set_state("crashed", message)
            return message
        return None

    def _crashed_with(self) -> str | None:
        """Why the child died, if it has been marked crashed (by `check_alive`, whoever called it)."""
        if self.state == "crashed" and self._proc is not None and self._proc.poll() is not None:
            return self.state_detail  # the sentence check_alive made when it marked the death
        return None

    async def confirm_death(self, within: float = 2.0) -> str | None:
        """After a broken connection: if the child is dying, wait for it and say why; None if it
        lives on. (The socket closes a moment before a killed process can be reaped.)"""
        deadline = time.monotonic() + within
        while self._proc is not None and self._proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # The window's own check may have marked the death first (it runs once the answer's
        # stream has ended): the answer still says why, not just that the connection broke.
        return self.check_alive() or self._crashed_with()

    def death_message(self) -> str:
        """Why the child is gone, for a child that was running and is no longer."""
        name = self.model.name if self.model else "the model"
        code = self._proc.returncode if self._proc else None
        log_text = self.log_tail()
        if templates.HUNG_LOG in log_text and self.plan is not None and self.model.path not in self._hung_templates:
            self._hung_templates.add(self.model.path)
            if self.on_template_hung is not None:
                self.on_template_hung(self.model, _known_format(self.plan))
        return explain_exit(log_text, code, name)

    # -- loading ------------------------------------------------------------------------------
    def loaded_with(self, model: ModelRecord, options: LoadOptions) -> bool:
        return (self.is_alive() and self.state == "ready" and self.model is not None
                and self.model.id == model.id and self.model.path == model.path
                and self.model.chat_format == model.chat_format and self.options == options)

    async def ensure(self, model: ModelRecord, options: LoadOptions) -> None:
        """Load `model` unless it is already loaded with these options and running."""
        async with self._lock:
            if not self.loaded_with(model, options):
                await self._load(model, options)

    async def _load(self, model: ModelRecord, options: LoadOptions) -> None:
        given = self.donor(model, options) if self.donor is not None else None
        if given is not None and given is not self and given.loaded_with(model, options):
            await self._stop()
            self._take_over(given)
            self._set_state("ready", f"{model.name} is ready (already loaded by the local server)")
            return
        releasable = hardware.process_memory(self.pid) if self.is_alive() else 0
        try:
            try:
                plan = plan_load(model, options, releasable=releasable)
            except EngineError as exc:
                # Models the local server loaded and nobody is using may go, to make room.
                if "memory" not in str(exc) or self.make_room is None or not await self.make_room():
                    raise
                plan = plan_load(model, options, releasable=releasable)
        except HearthError as exc:
            self._set_state("failed", str(exc))
            raise
        await self._stop()
        self.plan, self.options = plan, options
        self._set_state("loading", model.name)
        started = time.monotonic()
        for attempt in range(2):  # a second try only if another program took the port meanwhile
            self._port, self._api_key = free_port(), secrets.token_urlsafe(24)
            self._spawn(plan)
            try:
                await self._wait_ready(plan)
                await self._read_prompt_info()
                break
            except EngineError as exc:
                if attempt == 0 and "address already in use" in self.log_tail().lower():
                    continue
                self._set_state("failed", str(exc))
                raise
        self._set_state("ready", f"{model.name} loaded in {time.monotonic() - started:.1f} s")

    def _take_over(self, other: Engine) -> None:
        """Become `other`'s running child (its process, port, key, plan and log), leaving `other`
        stopped without stopping the child: one model, one engine, whoever asked first."""
        self._proc, self._port, self._api_key = other._proc, other._port, other._api_key
        self.plan, self.options, self.prompt_info = other.plan, other.options, other.prompt_info
        self.notice_pending, self._log_path = other.notice_pending, other._log_path
        other._proc, other.plan, other.prompt_info, other.notice_pending = None, None, {}, ""
        other._set_state("stopped", "")

    def chat_format_for(self, plan: LoadPlan) -> str:
        """The user's choice for the model; a known format instead of a template that hung."""
        choice = plan.model.chat_format or templates.AUTO
        if choice == templates.AUTO and plan.model.path in self._hung_templates:
            return _known_format(plan)
        return choice

    async def _read_prompt_info(self) -> None:
        import httpx

        try:
            async with net.async_client(local_only=True, timeout=10.0) as client:
                response = await client.get(f"http://127.0.0.1:{self._port}/hearth/v1/info",
                                            headers={"Authorization": f"Bearer {self._api_key}"})
                response.raise_for_status()
                self.prompt_info = response.json()
        except (httpx.HTTPError, ValueError):  # the model answers all the same; only the details are missing
            log.warning("the engine did not say which chat format it uses", exc_info=True)
            self.prompt_info = {}
        self.notice_pending = self.prompt_info.get("notice", "")

    def take_notice(self) -> str:
        """The engine's sentence about its chat template, once (then "")."""
        notice, self.notice_pending = self.notice_pending, ""
        return notice

    def _spawn(self, plan: LoadPlan) -> None:
        args = [
            *engine_command(),
            "--model", plan.model.path,
            "--port", str(self._port),
            "--n-ctx", str(plan.n_ctx),
            "--n-gpu-layers", str(plan.n_gpu_layers),
            "--threads", str(plan.n_threads),
            "--parent-pid", str(os.getpid()),
            "--chat-format", self.chat_format_for(plan),
        ]
        if self.embedding:
            args.append("--embedding")
        env = dict(engine_environment(), HEARTH_ENGINE_KEY=self._api_key)  # never on a command line
        self._log_path = self._own_log_path
        if self._log_path.exists():
            os.replace(self._log_path, self._log_path.with_suffix(".previous.log"))
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          env=env, close_fds=True)

    async def _wait_ready(self, plan: LoadPlan) -> None:
        import httpx
        url = f"http://127.0.0.1:{self._port}/v1/models"
        headers = {"Authorization": f"Bearer {self._api_key}"}
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        async with net.async_client(local_only=True, timeout=2.0) as client:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    raise EngineError(self.death_message())
                try:
                    response = await client.get(url, headers=headers)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    await self._stop()
                    raise EngineError(f"“{plan.model.name}” took more than {LOAD_TIMEOUT_S / 60:.0f} "
                                      "minutes to load, so Hearth gave up. Is the disk very slow?")
                await asyncio.sleep(0.05)

    # -- tokens -------------------------------------------------------------------------------
    async def count_tokens(self, text: str) -> int:
        async with net.async_client(local_only=True, timeout=30.0) as client:
            response = await client.post(f"http://127.0.0.1:{self._port}/extras/tokenize/count",
                                         headers={"Authorization": f"Bearer {self._api_key}"},
                                         json={"input": text})
            response.raise_for_status()
            return int(response.json()["count"])

    # -- stopping -----------------------------------------------------------------------------
    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            for _ in range(100):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                proc.kill()
                proc.wait()
        self._proc = None
        self._set_state("stopped", "")

    def stop_now(self) -> None:
        """Stop the child without an event loop (at exit)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        if proc is not None:
            self._set_state("stopped", "")
