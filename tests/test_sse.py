"""Stream capture and replay round-trip; a cut or broken stream never yields an answer."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.sse import StreamCapture, answer_usage, complete, replay


def answer(text: str, endpoint: str = "chat") -> dict:
    choice = (
        {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": "stop",
        }
        if endpoint == "chat"
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
    )
    return {
        "id": "x",
        "object": "chat.completion" if endpoint == "chat" else "text_completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }


@given(st.text(max_size=200), st.sampled_from(["chat", "completions"]), st.integers(1, 50))
def test_replay_then_capture_round_trips(text, endpoint, split):
    frames = b"".join(replay(endpoint, answer(text, endpoint), include_usage=True))
    capture = StreamCapture(endpoint)
    for i in range(0, len(frames), split):
        capture.feed(frames[i : i + split])
    assert capture.completion() == answer(text, endpoint)


def test_stream_without_done_is_not_an_answer():
    frames = b"".join(replay("chat", answer("hello there world"), include_usage=False))
    capture = StreamCapture("chat")
    capture.feed(frames[: frames.index(b"data: [DONE]")])
    assert capture.completion() is None


def test_stream_with_an_error_event_is_not_an_answer():
    capture = StreamCapture("chat")
    capture.feed(b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n')
    assert capture.completion() is None


def test_tool_call_deltas_are_assembled():
    capture = StreamCapture("chat")
    for delta in [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_", "arguments": ""},
                }
            ],
        },
        {"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
    ]:
        capture.feed(
            b'data: {"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":'
            + __import__("orjson").dumps(delta)
            + b',"finish_reason":null}]}\n\n'
        )
    capture.feed(
        b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}'
        b"\n\ndata: [DONE]\n\n"
    )
    call = capture.completion()["choices"][0]["message"]["tool_calls"][0]
    assert call == {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"a":1}'},
    }


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 2},
}


@given(st.text(max_size=200), st.text(max_size=50), st.integers(1, 50))
def test_anthropic_messages_replay_then_capture_round_trips(text, thought, split):
    answer = {
        **MESSAGE,
        "content": [
            {"type": "thinking", "thinking": thought, "signature": "sig"},
            {"type": "text", "text": text},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"city": text[:5]}},
        ],
    }
    frames = b"".join(replay("messages", answer, include_usage=False))
    capture = StreamCapture("messages")
    for i in range(0, len(frames), split):
        capture.feed(frames[i : i + split])
    assert capture.completion() == answer


@given(st.lists(st.text(max_size=60), min_size=1, max_size=3), st.integers(1, 50))
def test_responses_replay_then_capture_round_trips(texts, split):
    answer = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-4o",
        "output": [
            {"type": "function_call", "id": "fc_1", "name": "f", "arguments": "{}"},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": t, "annotations": []} for t in texts],
            },
        ],
        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    }
    frames = b"".join(replay("responses", answer, include_usage=False))
    capture = StreamCapture("responses")
    for i in range(0, len(frames), split):
        capture.feed(frames[i : i + split])
    assert capture.completion() == answer


def test_a_stream_without_its_last_event_or_with_an_error_is_never_an_answer():
    answer = {**MESSAGE, "content": [{"type": "text", "text": "hello there"}]}
    frames = list(replay("messages", answer, include_usage=False))
    cut = StreamCapture("messages")
    cut.feed(b"".join(frames[:-1]))  # no message_stop
    assert cut.completion() is None
    failed = StreamCapture("messages")
    failed.feed(b"".join(frames[:-1]))
    failed.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n')
    assert failed.completion() is None
    garbled = StreamCapture("messages")
    garbled.feed(b"".join(frames).replace(b'"index":0', b'"index":7', 1))
    assert garbled.completion() is None


WORDS = st.sampled_from(["message", "response", "completed", "end_turn", "text", "output_text"])
JUNK = st.none() | WORDS | st.integers() | st.floats() | st.text(max_size=3)
PARTS = st.lists(
    JUNK | st.dictionaries(st.sampled_from(["type", "text", "content"]), JUNK), max_size=2
)
FIELDS = ["type", "object", "stop_reason", "status", "content", "output", "usage", "choices"]


@given(
    st.sampled_from(["chat", "completions", "messages", "responses"]),
    st.dictionaries(
        st.sampled_from(FIELDS),
        JUNK
        | PARTS
        | st.lists(st.dictionaries(st.sampled_from(["type", "content"]), WORDS | PARTS), max_size=2)
        | st.dictionaries(
            st.sampled_from(["input_tokens", "output_tokens", "prompt_tokens"]), JUNK
        ),
    ),
)
@example("messages", {"type": "message", "stop_reason": "end_turn", "content": ["x"]})
@example("messages", {"usage": {"input_tokens": "many"}})
@example("responses", {"object": "response", "status": "completed", "output": ["x"]})
@example(
    "responses",
    {"object": "response", "status": "completed", "output": [{"type": "message", "content": [1]}]},
)
@example("chat", {"choices": ["x"]})
@example("chat", {"choices": [{"message": "x"}]})
@example("chat", {"choices": [{"message": {"content": None, "tool_calls": "x"}}]})
@example("completions", {"choices": [{"text": ["x"]}]})
@example("chat", {"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]})
@example(
    "messages",
    {"type": "message", "stop_reason": "end_turn", "content": [{"type": "text", "text": ["x"]}]},
)
@example(
    "messages", {"type": "message", "stop_reason": "end_turn", "content": [{"type": "thinking"}]}
)
@example(
    "responses",
    {
        "object": "response",
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": ["x"]}]}],
    },
)
# An integer past 64 bits (orjson writes none) in the usage or in a tool's input.
@example("chat", {"choices": [{}], "usage": -9223372036854775809})
@example(
    "messages",
    {
        "type": "message",
        "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"n": 2**70}}],
    },
)
def test_any_answer_upstream_sends_is_stored_only_if_it_can_be_replayed(endpoint, answer):
    usage = answer_usage(endpoint, answer)
    assert usage is None or min(usage.prompt, usage.completion) >= 0
    if complete(endpoint, answer):
        b"".join(replay(endpoint, answer, include_usage=True))
