"""`hearth gui --self-test`: open the window, load a model, generate a few tokens, exit 0 on success.

Used to check an installed or packaged Hearth on a machine with no screen.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass, replace

from PySide6.QtWidgets import QApplication

from desktop.core.settings import Sampling


@dataclass
class SelfTestResult:
    code: int = 1


def schedule_self_test(window) -> SelfTestResult:
    result = SelfTestResult()

    async def run() -> None:
        services = window.services
        try:
            if not services.library.models():
                print("self-test: no model is installed", file=sys.stderr)
                return
            conversation = services.chat.new_conversation(model_id=window.selected_model_id())
            sampling = replace(Sampling.from_dict(conversation.sampling), max_tokens=8, seed=1)
            services.store.update_conversation(conversation.id, sampling=asdict(sampling))
            window.open_conversation(conversation.id)
            window.send("Say hello.")
            while window.answering:
                await asyncio.sleep(0.05)
            answer = services.store.messages(conversation.id)[-1]
            services.store.delete_conversation(conversation.id)
            if answer.role == "assistant" and answer.status == "complete" and answer.content:
                print(f"self-test: ok, {answer.tokens_out} tokens from {answer.model}")
                result.code = 0
            else:
                print(f"self-test: failed: {answer.error or 'no answer'}", file=sys.stderr)
        finally:
            window.close()
            QApplication.instance().quit()

    asyncio.get_event_loop().call_soon(lambda: asyncio.ensure_future(run()))
    return result
