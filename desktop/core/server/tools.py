"""Tool calling on the local API server: the request's tools checked, a grammar that makes a
model call a tool when the request insists, the tools described to a model whose chat template
has no place for them, and the calls read back out of what a model wrote.

OpenAI's shapes (platform.openai.com/docs/api-reference/chat/create): `tools` is
`[{"type": "function", "function": {"name", "description", "parameters": JSON schema}}]`;
`tool_choice` is "none", "auto", "required" or `{"type": "function", "function": {"name"}}`; the
legacy `functions` / `function_call` mean the same. An answer's calls are
`[{"id", "type": "function", "function": {"name", "arguments": "JSON text"}}]`.

How models write calls, as their publishers document them: Hermes, Qwen 2.5 and Qwen 3 wrap a
`{"name", "arguments"}` object in `<tool_call>…</tool_call>`; Llama 3.1+ writes a bare
`{"name", "parameters"}` object (after `<|python_tag|>` for some); Mistral writes `[TOOL_CALLS]`
then a JSON list of `{"name", "arguments"}` (or, in newer tokenizers, `name[ARGS]{…}`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
MISTRAL_ARGS = re.compile(r"([A-Za-z0-9_.:-]{1,64})\[ARGS\]")


class ToolsError(ValueError):
    """The request's tools cannot be used as given; the message is a sentence for the caller,
    `param` the request field at fault."""

    def __init__(self, message: str, param: str = "tools") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ToolRequest:
    """What a chat request asks of tools. `tools`: OpenAI's list (functions only); `choice`:
    "none", "auto", "required", or the name of the one function the answer must call."""

    tools: tuple[dict[str, Any], ...]
    choice: str

    @property
    def offered(self) -> bool:
        """The model is offered tools for this answer."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        """The answer must be a call ("required", or one named function)."""
        return self.offered and self.choice != "auto"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self.tools)


def tool_request(body: dict[str, Any]) -> ToolRequest:
    """The tools of an OpenAI chat request (`tools`/`tool_choice`, or the legacy `functions`/
    `function_call`). Raises ToolsError for a malformed list or a choice naming no listed tool."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None and body.get("functions") is not None:
        functions = body["functions"]
        if not isinstance(functions, list):
            raise ToolsError("functions must be a list of function objects.", "functions")
        tools = [{"type": "function", "function": f} for f in functions]
        legacy = body.get("function_call")
        choice = ({"type": "function", "function": legacy} if isinstance(legacy, dict) else legacy)
    if tools is None:
        return ToolRequest((), "none")
    if not isinstance(tools, list):
        raise ToolsError("tools must be a list of {\"type\": \"function\", \"function\": {…}} objects.")
    checked = []
    for n, tool in enumerate(tools, 1):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise ToolsError(f"tool {n} must be {{\"type\": \"function\", \"function\": {{\"name\": …}}}} (only "
                             "functions can be called here).")
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ToolsError(f"tool {n} needs a name of letters, digits, _ . : or - (at most 64).")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise ToolsError(f"tool {n}'s parameters must be a JSON schema object.")
        checked.append({"type": "function", "function": {**function, "parameters": parameters}})
    if not checked:
        return ToolRequest((), "none")
    if choice is None:
        choice = "auto"
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if named not in {t["function"]["name"] for t in checked}:
            raise ToolsError(f"tool_choice names {named!r}, which is not one of the tools given.", "tool_choice")
        choice = named
    elif choice not in ("none", "auto", "required"):
        raise ToolsError("tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                         "\"function\": {\"name\": …}}.", "tool_choice")
    return ToolRequest(tuple(checked), choice)


def call_schema(request: ToolRequest) -> dict[str, Any]:
    """The JSON schema of the call a forced answer must be: `{"name": …, "arguments": {…}}` for the
    named function, or any one of the tools for "required"."""
    options = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                                 "arguments": t["function"]["parameters"]},
                "required": ["name", "arguments"]}
               for t in request.tools if request.choice in ("required", t["function"]["name"])]
    return options[0] if len(options) == 1 else {"anyOf": options}


def describe(request: ToolRequest) -> str:
    """The tools in words, for a model whose chat template has no place for them (it is then made
    to call one by a grammar, so it needs to know what it fills in)."""
    lines = ["You can call these functions. Answer with one call as a JSON object "
             "{\"name\": function name, \"arguments\": {…}}."]
    for tool in request.tools:
        function = tool["function"]
        lines.append(f"- {function['name']}: {function.get('description') or ''} "
                     f"Parameters (JSON schema): {json.dumps(function['parameters'], ensure_ascii=False)}")
    return "\n".join(lines)


def _call(obj: Any, names: frozenset[str]) -> dict[str, Any] | None:
    """An OpenAI tool call from one parsed object, if it names a listed tool."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {…}}
        obj = obj["function"]
    name = obj.get("name")
    if name not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _json_values(text: str) -> list[Any]:
    """The JSON values written one after another in `text` (whitespace or commas between);
    [] when anything else is there."""
    decoder = json.JSONDecoder()
    values, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t\r\n,;":
            i += 1
        if i >= len(text):
            return values
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            return []
        values.append(value)


def parse_calls(text: str, names: frozenset[str]) -> tuple[str, list[dict[str, Any]]]:
    """The tool calls a model wrote in `text` (see the module for the formats), and the text left
    around them. A call naming no listed tool, or with arguments that are not a JSON object, is
    not a call: such text stays the answer's content. Returns (content, calls)."""
    calls: list[dict[str, Any]] = []
    if "<tool_call>" in text:  # Hermes, Qwen
        for raw in CALL_TAG.findall(text):
            for value in _json_values(raw):
                call = _call(value, names)
                if call:
                    calls.append(call)
        if calls:
            return CALL_TAG.sub("", text).strip(), calls
    if "[TOOL_CALLS]" in text:  # Mistral
        head, _, rest = text.partition("[TOOL_CALLS]")
        found = MISTRAL_ARGS.match(rest.strip())
        if found:
            for piece in rest.split("[TOOL_CALLS]"):
                match = MISTRAL_ARGS.match(piece.strip())
                if match:
                    values = _json_values(piece.strip()[match.end():])
                    call = _call({"name": match.group(1), "arguments": values[0] if values else None}, names)
                    if call:
                        calls.append(call)
        else:
            for value in _json_values(rest):
                for item in value if isinstance(value, list) else [value]:
                    call = _call(item, names)
                    if call:
                        calls.append(call)
        if calls:
            return head.strip(), calls
    bare = text.strip().removeprefix("<|python_tag|>").strip()  # Llama 3.1+, and forced answers
    if bare.startswith(("{", "[")):
        values = _json_values(bare)
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                call = _call(item, names)
                if call is None:
                    return text, []
                calls.append(call)
        if calls:
            return "", calls
    return text, []
