"""Chat templates: turn a conversation into the prompt text a model was trained on.

A GGUF file usually carries its model's own template (`tokenizer.chat_template`, Jinja, as in
Hugging Face's `chat_template`). Hearth runs it in Jinja's immutable sandbox with a time limit,
and when a file has none, or its template fails, picks a known format from the file itself (its
special tokens, then its architecture). Each format also names the markers that end a turn or
start a new one: they are stop strings, so markup never shows in an answer.

Rendering happens in the engine child (engine_server.py), never in the window's process: a
hostile template can cost the engine its time, never the window. Sources: the formats as their
publishers document them (ChatML: OpenAI/Qwen; Llama 3: Meta's model card; Gemma: Google's
"Gemma formatting"; Mistral: mistral-common's instruct tokenizers; Phi-3: Microsoft's model card;
DeepSeek: the V3/R1 tokenizer_config.json templates).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from desktop.core.errors import HearthError

AUTO = "auto"  # the model's own template when it works, else the format found from the file
TIME_LIMIT_S = 3.0  # longest a template may take to render one conversation
# What the engine child logs before it exits over a template that ignored its time limit.
HUNG_LOG = "hearth-engine: the chat template could not be stopped"
LONGEST_OUTPUT = 4_000_000  # characters: a prompt larger than any context; more is a template gone wrong


class TemplateError(HearthError):
    """A chat template could not be used; str() is a sentence for the user."""


class TemplateTimeout(TemplateError):
    pass


class TemplateRefused(TemplateError):
    """The template itself refused a conversation (its raise_exception)."""


@dataclass(frozen=True)
class ChatFormat:
    """A known prompt format.

    `markers` are the texts that end a turn or start another one: generation stops at any of
    them. `system` says whether the format has a system role (else the system prompt is put at
    the start of the first user message). `tokens` are special tokens whose presence in a
    vocabulary identifies the format; `architectures` are GGUF `general.architecture` values
    that use it."""

    name: str
    label: str  # as a sentence names it: "using the ChatML format"
    template: str
    markers: tuple[str, ...]
    system: bool = True
    tokens: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()


# Templates in Jinja, written for Hearth from each format's published description. They get
# `messages` (role/content dicts, alternating after normalize_turns) and `add_generation_prompt`.
_CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_LLAMA3 = ("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
           "{{ m.content | trim }}<|eot_id|>{% endfor %}"
           "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
_GEMMA = ("{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
          "{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
          "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
_MISTRAL = ("{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content | trim }} [/INST]"
            "{% else %} {{ m.content | trim }}{{ eos_token }}{% endif %}{% endfor %}")
_LLAMA2 = ("{% for m in messages %}{% if m.role == 'system' %}[INST] <<SYS>>\n{{ m.content | trim }}\n"
           "<</SYS>>\n\n{% elif m.role == 'user' %}{% if not loop.first and messages[loop.index0 - 1].role"
           " != 'system' %}[INST] {% elif loop.first %}[INST] {% endif %}{{ m.content | trim }} [/INST]"
           "{% else %} {{ m.content | trim }} {{ eos_token }}{% endif %}{% endfor %}")
_PHI3 = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
_DEEPSEEK = ("{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}"
             "{% elif m.role == 'user' %}<｜User｜>{{ m.content }}"
             "{% else %}<｜Assistant｜>{{ m.content }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}")
_GLM4 = ("[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
_PLAIN = ("{% for m in messages %}{% if m.role == 'system' %}{{ m.content | trim }}\n\n"
          "{% elif m.role == 'user' %}User: {{ m.content | trim }}\n\n"
          "{% else %}Assistant: {{ m.content | trim }}\n\n{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}Assistant:{% endif %}")

FORMATS: dict[str, ChatFormat] = {f.name: f for f in (
    ChatFormat("chatml", "ChatML", _CHATML, ("<|im_end|>", "<|im_start|>"),
               tokens=("<|im_start|>",), architectures=("qwen2", "qwen3", "qwen2moe", "qwen3moe", "qwen")),
    ChatFormat("llama3", "Llama 3", _LLAMA3, ("<|eot_id|>", "<|start_header_id|>", "<|eom_id|>"),
               tokens=("<|start_header_id|>",)),
    ChatFormat("gemma", "Gemma", _GEMMA, ("<end_of_turn>", "<start_of_turn>"), system=False,
               tokens=("<start_of_turn>",), architectures=("gemma", "gemma2", "gemma3", "gemma3n")),
    ChatFormat("mistral", "Mistral", _MISTRAL, ("[INST]", "[/INST]"), system=False,
               tokens=("[INST]",)),
    ChatFormat("phi3", "Phi-3", _PHI3, ("<|end|>", "<|user|>", "<|assistant|>", "<|system|>"),
               tokens=("<|assistant|>", "<|end|>"), architectures=("phi3",)),
    ChatFormat("deepseek", "DeepSeek", _DEEPSEEK,
               ("<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"), tokens=("<｜User｜>",),
               architectures=("deepseek2",)),
    ChatFormat("glm4", "GLM-4", _GLM4, ("<|user|>", "<|observation|>", "<|system|>"),
               tokens=("[gMASK]",), architectures=("chatglm", "glm4", "glm4moe")),
    ChatFormat("llama2", "Llama 2", _LLAMA2, ("[INST]", "[/INST]", "<<SYS>>")),
    ChatFormat("plain", "plain text", _PLAIN, ("\nUser:", "\nAssistant:")),
)}
# Detection by tokens runs in this order: the first format whose tokens are all in the vocabulary.
# DeepSeek first: its R1 distills keep the base model's markup (Qwen's <|im_start|>, Llama 3's headers).
DETECTION_ORDER = ("deepseek", "llama3", "chatml", "gemma", "glm4", "phi3", "mistral")


@dataclass(frozen=True)
class Detected:
    """The format found for a file with no usable template, and how it was found (a phrase)."""

    format: ChatFormat
    how: str


def detect(architecture: str, tokens: Iterable[str]) -> Detected:
    """The known format a model was most likely trained on: from the special tokens in its
    vocabulary (a GGUF's `tokenizer.ggml.tokens`), then its architecture, else plain text."""
    vocabulary = set(tokens)
    for name in DETECTION_ORDER:
        fmt = FORMATS[name]
        if all(t in vocabulary for t in fmt.tokens):
            return Detected(fmt, "found from its special tokens")
    for fmt in FORMATS.values():
        if architecture in fmt.architectures:
            return Detected(fmt, f"usual for its architecture, {architecture}")
    return Detected(FORMATS["plain"], "it has no chat markup")


EXAMPLES = {"chatml": "Qwen, SmolLM, Hermes, Yi", "llama3": "Llama 3.x and its fine-tunes",
            "gemma": "Gemma 1–3", "mistral": "Mistral, Mixtral", "phi3": "Phi-3, Phi-3.5, Phi-4 mini",
            "deepseek": "DeepSeek V3, R1 and its distills", "glm4": "GLM-4", "llama2": "Llama 2 chat",
            "plain": "base models with no chat training"}


def choice_label(choice: str) -> str:
    """What a per-model format choice is called in the model's settings ("ChatML")."""
    if choice in ("", AUTO):
        return "Automatic"
    fmt = FORMATS.get(choice)
    return f"{fmt.label[0].upper()}{fmt.label[1:]}" if fmt else choice


def choice_hint(choice: str) -> str:
    """A line about a format choice: which models it is for."""
    if choice in ("", AUTO):
        return "The model's own chat template; a known format when the file has none or it fails"
    return f"For {EXAMPLES[choice]}" if choice in EXAMPLES else ""


# -- the sandbox ------------------------------------------------------------------------------------

def _sandbox_class():
    """Jinja's immutable sandbox, made to keep a time limit and a size limit.

    Every call, attribute and item lookup, and every step of a `for` loop checks the clock, so a
    template that would run for hours (nested loops, runaway recursion) stops at the limit.
    Multiplication, powers and string padding are capped so no single step can build a huge value.
    """
    import functools

    from jinja2 import nodes
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
    from jinja2.visitor import NodeTransformer

    def too_large(value: Any) -> bool:
        return isinstance(value, str | list | tuple | dict) and len(value) > LONGEST_OUTPUT

    class Guard(NodeTransformer):
        """Every loop steps through hearth_loop(...), every `~` joins through hearth_join(...)."""

        def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (jinja's visitor names)
            node = self.generic_visit(node)
            node.iter = nodes.Call(nodes.Name("hearth_loop", "load"), [node.iter], [], None, None)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
            node = self.generic_visit(node)
            return nodes.Call(nodes.Name("hearth_join", "load"), [nodes.List(node.nodes)], [], None, None)

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+"])

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.clock = threading.local()
            self.globals["range"] = lambda *args: self.ticking(safe_range(*args))
            self.globals["hearth_loop"] = self.ticking
            self.globals["hearth_join"] = self.join
            # Filters run in one step (wordwrap, replace, join, …): each checks the clock first
            # and refuses inputs and results larger than any prompt.
            self.filters = {name: self.guarded(f) for name, f in self.filters.items()}

        def guarded(self, function: Any) -> Any:
            @functools.wraps(function)  # keeps jinja's pass_context / pass_environment marks
            def guard(*args: Any, **kwargs: Any) -> Any:
                self.tick()
                if any(too_large(a) for a in (*args, *kwargs.values())):
                    raise SecurityError("a value that large is not allowed")
                result = function(*args, **kwargs)
                if too_large(result):
                    raise SecurityError("a value that large is not allowed")
                return result

            return guard

        def join(self, parts: list[Any]) -> str:
            self.tick()
            text = "".join(str(p) for p in parts)
            if len(text) > LONGEST_OUTPUT:
                raise SecurityError("a value that large is not allowed")
            return text

        def tick(self) -> None:
            deadline = getattr(self.clock, "deadline", None)
            if deadline is not None and time.monotonic() > deadline:
                raise TemplateTimeout("timeout")

        def ticking(self, items: Iterable[Any]) -> Iterator[Any]:
            for item in items:
                self.tick()
                yield item

        def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
            return Guard().visit(super()._parse(source, name, filename))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            __self.tick()
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str) and any(isinstance(a, int) and a > LONGEST_OUTPUT for a in args):
                raise SecurityError("a string that large is not allowed")
            return super().call(__context, __obj, *args, **kwargs)

        def getattr(self, obj: Any, attribute: str) -> Any:
            self.tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            self.tick()
            return super().getitem(obj, argument)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            self.tick()
            if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("a power that large is not allowed")
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if (isinstance(seq, str | list | tuple) and isinstance(count, int)
                            and len(seq) * count > LONGEST_OUTPUT):
                        raise SecurityError("a value that large is not allowed")
            return super().call_binop(context, operator, left, right)

    return Sandbox


_SANDBOX: Any = None


def _environment() -> Any:
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = _sandbox_class()
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTags(Extension):
        """Hugging Face's `{% generation %}` marks (for training masks): rendered as their content."""

        tags = {"generation"}

        def parse(self, parser: Any) -> list[nodes.Node]:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = _SANDBOX(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTags, jinja2.ext.loopcontrols])

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
        # As transformers' chat templates expect: non-ASCII kept, no HTML escaping.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env.filters["tojson"] = env.guarded(tojson)
    return env


class _Raised(Exception):
    """What a template's raise_exception() said."""


def _raise_exception(message: str) -> None:
    raise _Raised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


class Template:
    """One chat template, compiled in the sandbox.

    Raises TemplateError from the constructor when the template cannot be parsed, and from
    render() when it raises, is refused by the sandbox, or runs past `time_limit` seconds."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 time_limit: float = TIME_LIMIT_S, who: str = "This model's chat template") -> None:
        from jinja2 import TemplateSyntaxError

        self.source = source
        self.bos_token, self.eos_token = bos_token, eos_token
        self.time_limit = time_limit
        self.who = who
        self._env = _environment()
        try:
            self._template = self._env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{who} could not be read (a mistake on line {exc.lineno}: {exc.message}).") from None
        except (RecursionError, MemoryError):
            raise TemplateError(f"{who} is too large or too deeply nested to read.") from None

    @property
    def takes_tools(self) -> bool:
        """The template reads a `tools` variable: it has a place for the tools a request offers
        (Qwen 2.5, Llama 3.1+, Mistral, Hermes… as their publishers wrote them)."""
        return bool(re.search(r"\btools\b", self.source))

    def render(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True,
               tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The prompt text for `messages` (dicts with "role" and "content"; an assistant turn may
        carry `tool_calls`, a "tool" turn a `tool_call_id`). `tools`: OpenAI's tool list
        (`[{"type": "function", "function": {"name", "description", "parameters"}}]`), given to
        the template as transformers' apply_chat_template does; None leaves it undefined."""
        from jinja2.exceptions import SecurityError
        from jinja2.exceptions import TemplateError as JinjaError

        extra = {"tools": [dict(t) for t in tools]} if tools else {}
        self._env.clock.deadline = time.monotonic() + self.time_limit
        try:
            text = self._template.render(
                messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, raise_exception=_raise_exception,
                strftime_now=_strftime_now, **extra)
        except TemplateTimeout:
            raise TemplateTimeout(f"{self.who} ran for more than {self.time_limit:g} s and was stopped.") from None
        except _Raised as exc:
            raise TemplateRefused(f"{self.who} refused this conversation: “{str(exc)[:200]}”.") from None
        except SecurityError:
            raise TemplateError(f"{self.who} tried something unsafe, which Hearth blocked.") from None
        except RecursionError:
            raise TemplateError(f"{self.who} calls itself without end.") from None
        except MemoryError:
            raise TemplateError(f"{self.who} needs far more memory than a prompt can.") from None
        except OverflowError:  # the sandbox's range() limit
            raise TemplateError(f"{self.who} asks for a loop far longer than any conversation.") from None
        except (JinjaError, TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
            raise TemplateError(f"{self.who} failed on this conversation ({str(exc)[:160]}).") from None
        finally:
            self._env.clock.deadline = None
        if len(text) > LONGEST_OUTPUT:
            raise TemplateError(f"{self.who} wrote a prompt far larger than any model can read.")
        return text


# -- turns ------------------------------------------------------------------------------------------

def normalize_turns(messages: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The turns as every chat template expects them: at most one system message, first; then
    user and assistant strictly alternating, starting with the user. Empty turns are dropped and
    consecutive turns of one role (a user message whose answer was stopped before its first word,
    or failed) are joined with a blank line, so no template sees two user turns side by side."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool" or message.get("tool_calls"):
            # A tool round (an answer that called tools, a tool's result): kept as it is, for
            # the templates that take tools; never joined with a neighbour.
            turns.append({**message, "content": content})
            continue
        if not content.strip():
            continue
        if role == "system":
            system.append(content)
            continue
        if turns and turns[-1]["role"] == role and not turns[-1].get("tool_calls"):
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + content}
        elif not turns and role == "assistant":
            continue  # an answer to nothing: a template would refuse it
        else:
            turns.append({"role": role, "content": content})
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return head + turns


def fold_system(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """For templates with no system role: the system prompt goes at the start of the first user
    message (as Gemma's and Mistral's own templates do)."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    for i, message in enumerate(rest):
        if message["role"] == "user":
            rest[i] = {"role": "user", "content": f"{system}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system}, *rest]


# -- the plan for one model ------------------------------------------------------------------------

PROBE = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi! How can I help?"},
         {"role": "user", "content": "Name three colors."}]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: its text, the stop strings for its format, and the sentence to show
    the user when Hearth had to choose something other than the model's own template."""

    text: str
    stops: tuple[str, ...]
    notice: str = ""

    @property
    def opens_thinking(self) -> bool:
        """The template already opened a reasoning block (DeepSeek-R1 distills, some Qwen3
        templates): the answer starts inside it, with no `<think>` of its own."""
        return self.text.rstrip().endswith("<think>")


@dataclass
class PromptBuilder:
    """Builds prompts for one model: its own template when it works, else a known format.

    `chat_template` is the file's template ("" when none), `architecture` and `tokens` (the
    vocabulary's markup tokens) identify the fallback format; `choice` is the user's per-model
    choice (AUTO or a FORMATS name). The model's template is tried once at construction on a
    small conversation (under the time limit), so a broken one is known before the first message.
    """

    chat_template: str
    architecture: str
    tokens: Iterable[str]
    bos_token: str = ""
    eos_token: str = ""
    choice: str = AUTO
    time_limit: float = TIME_LIMIT_S
    notice: str = field(init=False, default="")  # said once, where the user sees it
    system_folded: bool = field(init=False, default=False)
    detected: Detected = field(init=False)
    _own: Template | None = field(init=False, default=None)
    _known: Template | None = field(init=False, default=None)  # the known format's, once compiled

    def __post_init__(self) -> None:
        self.tokens = frozenset(self.tokens)
        self.detected = detect(self.architecture, self.tokens)
        if self.choice not in ("", AUTO):
            fmt = FORMATS.get(self.choice)
            if fmt is None:
                self.notice = f"Hearth does not know the chat format “{self.choice}”; {self._fallback_phrase()}."
            else:
                self.detected = Detected(fmt, "chosen in the model's settings")
            self.system_folded = not self.detected.format.system
            return
        if not self.chat_template.strip():
            self.notice = f"This file has no chat template; {self._fallback_phrase()}."
            self.system_folded = not self.detected.format.system
            return
        try:
            own = Template(self.chat_template, bos_token=self.bos_token, eos_token=self.eos_token,
                           time_limit=self.time_limit)
            refused = False
            try:
                text = own.render(PROBE)
            except TemplateTimeout:
                raise
            except TemplateError as exc:
                text, refused = "", isinstance(exc, TemplateRefused)
            if PROBE[0]["content"] not in text:  # refused, or silently dropped, the system role
                try:
                    text = own.render(fold_system(PROBE))
                except TemplateRefused:
                    if not refused:
                        raise
                    # It refuses this sample both ways, for what it says rather than its shape:
                    # it may take real conversations, so each is tried (build).
                    self._own = own
                    return
                self.system_folded = True
            if PROBE[-1]["content"] not in text:
                raise TemplateError("This model's chat template leaves out the user's words.")
            self._own = own
        except TemplateError as exc:
            self.notice = f"{exc} {self._fallback_phrase(capital=True)}."
            self.system_folded = not self.detected.format.system

    def _fallback_phrase(self, capital: bool = False) -> str:
        return f"{'U' if capital else 'u'}sing the {self.detected.format.label} format ({self.detected.how})"

    @property
    def format_name(self) -> str:
        """"model" for the model's own template, else the FORMATS name in use."""
        return "model" if self._own is not None else self.detected.format.name

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings: the markers of the format in use (for the model's own template, the
        detected format's markers, which its template writes too) and the end-of-sequence text."""
        markers = list(self.detected.format.markers)
        if self._own is not None:
            # The model's template may be any format: stop on the markers of every format whose
            # tokens this vocabulary has, plus its end-of-sequence token.
            for fmt in FORMATS.values():
                if fmt.tokens and all(t in self.tokens for t in fmt.tokens):
                    markers.extend(m for m in fmt.markers if m not in markers)
        if self.eos_token and self.eos_token not in markers:
            markers.append(self.eos_token)
        return tuple(m for m in markers if m)

    def _render_format(self, messages: Sequence[dict[str, str]]) -> str:
        fmt = self.detected.format
        if self._known is None or self._known.source != fmt.template:  # compiled once
            self._known = Template(fmt.template, bos_token=self.bos_token, eos_token=self.eos_token,
                                   time_limit=self.time_limit, who=f"The {fmt.label} format")
        return self._known.render(fold_system(messages) if not fmt.system else list(messages))

    @property
    def takes_tools(self) -> bool:
        """The prompt can offer tools: the model's own template is in use and has a place for them."""
        return self._own is not None and self._own.takes_tools

    def build(self, messages: Iterable[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None) -> Prompt:
        """The prompt for a conversation. A model template that fails on this conversation gives
        way to the detected format (for good: it is not tried again), with a notice saying why.
        `tools` (OpenAI's list) go to the model's own template; see `takes_tools`.

        Raises TemplateError if tools are given and the template has no place for them, or (it
        should not) if the fallback format itself fails."""
        turns = normalize_turns(messages)
        if tools or any(t["role"] == "tool" or t.get("tool_calls") for t in turns):
            if not self.takes_tools:
                raise TemplateError("This model's chat template has no place for tools, so the model cannot "
                                    "be offered any.")
            # The template's own failure is the request's: falling back would lose the tools.
            return Prompt(self._own.render(fold_system(turns) if self.system_folded else turns, tools=tools),
                          self.stops)
        if self._own is not None:
            try:
                try:
                    text = self._own.render(fold_system(turns) if self.system_folded else turns)
                except TemplateRefused:
                    if self.system_folded or not turns or turns[0]["role"] != "system":
                        raise
                    text = self._own.render(fold_system(turns))  # it refuses a system role after all
                    self.system_folded = True
                return Prompt(text, self.stops)
            except TemplateError as exc:
                self._own = None
                self.system_folded = not self.detected.format.system
                self.notice = f"{exc} {self._fallback_phrase(capital=True)}."
                return Prompt(self._render_format(turns), self.stops, self.notice)
        return Prompt(self._render_format(turns), self.stops)

    def info(self) -> dict[str, Any]:
        """What the engine reports about its prompts (GET /hearth/v1/info)."""
        return {"chat_format": self.format_name, "format_label": (
                    "the model's own chat template" if self._own is not None else self.detected.format.label),
                "system_folded": self.system_folded, "notice": self.notice, "stops": list(self.stops),
                "tools": self.takes_tools}


def describe(chat_template: str, architecture: str, tokens: Iterable[str], choice: str = AUTO) -> str:
    """For a model's details: which prompt format it will get. The template is only read (parsed),
    never run: what it does with a conversation is known when the engine tries it."""
    detected = detect(architecture, tokens)
    if choice not in ("", AUTO) and choice in FORMATS:
        return f"{FORMATS[choice].label} (chosen)"
    if not chat_template.strip():
        return f"None in this file: {detected.format.label}, {detected.how}"
    try:
        Template(chat_template)
    except TemplateError:
        return f"The model's own chat template cannot be read: {detected.format.label} instead, {detected.how}"
    return "The model's own chat template"
