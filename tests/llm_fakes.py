"""A role-aware fake OpenAI-compatible server for graph tests (real HTTP on loopback)."""

from __future__ import annotations

import json
import re
from typing import Any

from fake_chat_server import FakeChatServer

CATEGORY_IN_HISTORY = re.compile(r"\(\d+\) \((\w+)\)")
TOPIC_LIST = re.compile(r"chosen only from this list: ([^\n]+)")


def _user_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


def genre_responder(item: str, body: dict[str, Any]) -> str:
    """Valid answers for each GENRE role, derived from the prompt itself."""
    system = body["messages"][0]["content"]
    text = _user_text(body)
    if "reader's request" in system:  # steering: map one known request, refuse the rest
        if "no celebrity gossip" in text:
            return json.dumps(
                {
                    "boost": {"news": 1.5},
                    "exclude": ["entertainment"],
                    "freshness_days": None,
                    "diversity": None,
                }
            )
        return "Sorry, I am not sure what you mean."
    if "Describe the user's interests" in text:  # profiler: the first allowed topic
        allowed = TOPIC_LIST.search(text)
        first = allowed.group(1).split(",")[0].strip().strip("[]\"'") if allowed else "news"
        return json.dumps({"topics": [first], "regions": []})
    if '"category"' in text:  # generator: stay in the user's first category
        found = CATEGORY_IN_HISTORY.search(text)
        category = found.group(1) if found else "news"
        return json.dumps(
            {
                "title": f"What comes next in {category}",
                "abstract": f"A synthetic {category} story for a new reader.",
                "category": category,
            }
        )
    title = re.search(r"title: ([^\n]+)", text)
    headline = title.group(1) if title else item
    return json.dumps({"title": f"Report: {headline}", "description": f"About {headline}."})


def fake_llm_server() -> FakeChatServer:
    return FakeChatServer(responder=genre_responder)
