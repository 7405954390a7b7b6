"""Property tests of the pure policies: keys, controls, decisions, guards, pricing."""

from __future__ import annotations

import contextlib
import re
import time
from unicodedata import normalize

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.config import Config
from policies.controls import ControlError, Controls, parse_controls
from policies.decide import RequestError, access, decide, json_depth_exceeds
from policies.guards import (
    ORDINAL_DIGITS,
    ORDINALS,
    number_forms,
    screen,
    swapped_roles,
    turned_around,
    unseen,
)
from policies.keys import exact_key, tenant_of
from policies.pricing import Price, PriceTable

CONFIG = Config().policy(default_threshold=0.5)  # the defaults, written once, in Config
# One meaningful word swapped for another: no veto, a feature of the calibrated score.
WEIGHED = "swapped word, weighed"


def veto(a: str, b: str) -> str | None:
    """The guard that vetoes the pair, if any."""
    return screen(a, b)[0]


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.text(min_size=1, max_size=40),
        }
    ),
    min_size=1,
    max_size=4,
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "gpt-4o"]), "messages": messages},
    optional={"temperature": st.floats(0, 2), "seed": st.integers(0, 9)},
)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=16)


def decide_for(body, tenant="t", namespace="default", **controls):
    return decide("chat", body, Controls(namespace=namespace, **controls), tenant, CONFIG)


@given(bodies, names, names, names, names)
def test_no_two_tenants_or_namespaces_share_a_key(body, tenant_a, tenant_b, ns_a, ns_b):
    a = decide_for(body, tenant_a, ns_a)
    b = decide_for(body, tenant_b, ns_b)
    assert (a.key == b.key) == (tenant_a == tenant_b and ns_a == ns_b)
    if a.semantic and b.semantic:
        assert (a.semantic.context_key == b.semantic.context_key) == (
            tenant_a == tenant_b and ns_a == ns_b
        )


@given(
    bodies,
    st.booleans(),
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
)
def test_key_ignores_stream_user_and_stream_options(body, stream, user, options):
    plain = decide_for(body)
    varied = decide_for({**body, "stream": stream, "user": user, "stream_options": options})
    assert plain.key == varied.key


@given(
    bodies, st.sampled_from(["temperature", "seed", "max_tokens", "tools", "n"]), st.integers(1, 99)
)
def test_key_changes_with_any_parameter(body, field, value):
    changed = {**body, field: value if field != "tools" else [{"type": "function", "v": value}]}
    if body.get(field) == changed[field]:
        return
    assert decide_for(body).key != decide_for(changed).key


@given(st.integers(), st.integers())
def test_integers_of_any_size_keep_their_keys_apart(a, b):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    key_a = exact_key("chat", {**body, "seed": a}, "t", "n", ())
    assert (key_a == exact_key("chat", {**body, "seed": b}, "t", "n", ())) == (a == b)


@given(st.dictionaries(st.text(max_size=8), json_scalars, max_size=6))
def test_key_does_not_depend_on_field_order(extra):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    reordered = dict(reversed(list(body.items())))
    assert exact_key("chat", body, "t", "n", ()) == exact_key("chat", reordered, "t", "n", ())


@given(st.text(min_size=1, max_size=60))
def test_tenant_never_contains_the_key(api_key):
    tenant = tenant_of([("Authorization", f"Bearer {api_key}")])
    assert api_key not in tenant or len(api_key) < 3
    assert tenant == tenant_of([("Authorization", f"Bearer {api_key}")])
    assert tenant_of([]) == "anonymous"
    assert tenant_of([("Authorization", "Bearer x")], shared_tenant="shared") == "shared"


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_a_shared_placeholder_beside_the_real_keys_makes_a_tenant_per_key(key_1, key_2):
    placeholder = ("Authorization", "Bearer not-used")
    one = tenant_of([placeholder, ("api-key", key_1)])
    assert (one == tenant_of([placeholder, ("api-key", key_2)])) == (key_1.strip() == key_2.strip())
    assert one != tenant_of([placeholder])


def test_semantic_context_covers_everything_but_the_last_user_message():
    base = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How do I learn Python quickly?"},
    ]
    a = decide_for({"model": "m", "messages": base})
    reworded = decide_for(
        {
            "model": "m",
            "messages": [
                base[0],
                {"role": "user", "content": "What is the fastest way to learn Python?"},
            ],
        }
    )
    other_system = decide_for(
        {"model": "m", "messages": [{"role": "system", "content": "You are verbose."}, base[1]]}
    )
    other_turns = decide_for(
        {
            "model": "m",
            "messages": [
                base[0],
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                base[1],
            ],
        }
    )
    assert a.semantic and reworded.semantic and other_system.semantic and other_turns.semantic
    assert a.semantic.context_key == reworded.semantic.context_key
    assert a.semantic.context_key != other_system.semantic.context_key
    assert a.semantic.context_key != other_turns.semantic.context_key
    assert a.semantic.text == "How do I learn Python quickly?"


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"n": 2},
        {
            "messages": [
                {"role": "user", "content": "What is the weather?"},
                {"role": "assistant", "tool_calls": [{"id": "1"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                {"role": "user", "content": "And tomorrow then?"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        {"messages": [{"role": "user", "content": "hi"}]},  # too short
        {"messages": [{"role": "user", "content": "x" * 5000}]},  # too long
    ],
)
def test_unsuited_requests_are_exact_only(extra):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "How do I learn Python?"}],
        **extra,
    }
    decision = decide_for(body)
    assert decision.semantic is None
    assert decision.read


def test_a_completion_that_echoes_its_prompt_is_exact_only():
    """Its answer starts with the prompt: a rewording's answer would echo another prompt."""
    body = {"model": "m", "prompt": "How do I learn Python?", "echo": True}
    controls = Controls()
    assert decide("completions", body, controls, "t", CONFIG).semantic is None
    assert decide("completions", {**body, "echo": False}, controls, "t", CONFIG).semantic


def test_mode_exact_and_off():
    body = {"model": "m", "messages": [{"role": "user", "content": "How do I learn Python?"}]}
    assert decide_for(body, mode="exact").semantic is None
    off = decide_for(body, mode="off")
    assert (off.read, off.store, off.status_on_miss) == (False, False, "BYPASS")
    refresh = decide_for(body, no_cache=True)
    assert (refresh.read, refresh.store, refresh.status_on_miss) == (False, True, "REFRESH")


@given(st.floats(0, 10**9))
def test_ttl_is_capped(ttl):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert decide_for(body, ttl=ttl).ttl == min(ttl, CONFIG.max_ttl)


controls = st.builds(
    Controls,
    no_cache=st.booleans(),
    no_store=st.booleans(),
    ttl=st.none() | st.floats(0, 10**8),
    mode=st.sampled_from(["semantic", "exact", "off"]),
)


@given(controls, st.booleans())
def test_access_reads_stores_and_names_a_miss_by_the_headers(asked, background):
    """The rules every cached route follows, embeddings included."""
    allowed = access(asked, CONFIG, bypass=background)
    off = background or asked.mode == "off"
    assert allowed.read == (not off and not asked.no_cache)
    assert allowed.store == (not off and not asked.no_store and allowed.ttl > 0)
    assert allowed.status_on_miss == ("BYPASS" if off else "REFRESH" if asked.no_cache else "MISS")
    assert allowed.ttl == min(
        CONFIG.default_ttl if asked.ttl is None else asked.ttl, CONFIG.max_ttl
    )


@given(bodies, controls, st.booleans())
def test_a_decision_allows_what_access_allows(body, asked, background):
    body = {**body, "background": True} if background else body
    decision = decide("chat", body, asked, "t", CONFIG)
    allowed = access(asked, CONFIG, bypass=background)
    assert (decision.read, decision.store, decision.status_on_miss, decision.ttl) == (
        allowed.read,
        allowed.store,
        allowed.status_on_miss,
        allowed.ttl,
    )


@given(json_values)
def test_decide_never_raises_anything_but_request_error(body):
    with contextlib.suppress(RequestError):
        decide_for(body)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "Cache-Control",
                "X-Cache-TTL",
                "X-Cache-Mode",
                "X-Cache-Namespace",
                "X-Cache-Threshold",
                "X-Cache-Tags",
            ]
        ),
        st.text(max_size=20),
    )
)
def test_parse_controls_raises_only_control_errors_naming_the_header(headers):
    try:
        parse_controls(headers.items())
    except ControlError as exc:
        assert exc.header in headers
        assert exc.header in str(exc)


BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
tag_names = st.text(alphabet="abcXYZ019._:/@+-", min_size=1, max_size=64)


@given(st.lists(tag_names, max_size=16), st.sampled_from([",", ", ", " , "]))
def test_tags_are_read_back_in_order_each_once(tags, separator):
    controls = parse_controls([("X-Cache-Tags", separator.join(tags))])
    assert controls.tags == tuple(dict.fromkeys(tags))
    assert decide_for(BODY, tags=controls.tags).key == decide_for(BODY).key


@given(st.text(max_size=80))
def test_any_tags_header_is_read_or_refused_by_name(text):
    try:
        tags = parse_controls([("X-Cache-Tags", text)]).tags
    except ControlError as exc:
        assert exc.header == "X-Cache-Tags"
        return
    assert len(tags) <= 16 and all(re.fullmatch(r"[A-Za-z0-9._:/@+-]{1,64}", t) for t in tags)


def test_parse_controls_reads_cache_control():
    c = parse_controls([("Cache-Control", "no-cache, no-store, max-age=10, s-maxage=5")])
    assert (c.no_cache, c.no_store, c.max_age) == (True, True, 5)


# Digits of every script, quotes and spaces: "²".isdigit() is true, and float("١") is 1.0.
seconds_text = st.text(
    st.characters(categories=["Nd", "No"]) | st.sampled_from('0123456789" '), max_size=4
)


@given(st.sampled_from(["max-age", "s-maxage", "MAX-AGE"]), seconds_text)
def test_cache_control_seconds_are_ascii_digits_or_a_control_error(name, value):
    try:
        controls = parse_controls([("Cache-Control", f"{name}={value}")])
    except ControlError as exc:
        assert exc.header == "Cache-Control"
    else:
        assert controls.max_age == int(value.strip().strip('"'))
        assert value.strip().strip('"').isascii()


directives = st.lists(
    st.sampled_from(["no-cache", "no-store", "max-age=60", "s-maxage=5", "private", "public"]),
    min_size=1,
    max_size=6,
)


@given(directives, st.data())
def test_cache_control_over_several_lines_reads_as_one_list(listed, data):
    cut = data.draw(st.integers(1, len(listed)))
    lines = [("Cache-Control", ", ".join(listed[:cut]))]
    if cut < len(listed):
        lines.append(("cache-control", ", ".join(listed[cut:])))
    assert parse_controls(lines) == parse_controls([("Cache-Control", ", ".join(listed))])


@pytest.mark.parametrize("header", ["X-Cache-TTL", "X-Cache-Mode", "x-cache-namespace"])
def test_any_other_control_header_sent_twice_is_a_control_error(header):
    with pytest.raises(ControlError) as caught:
        parse_controls([(header, "1"), ("Authorization", "Bearer k"), (header.upper(), "1")])
    assert caught.value.header.lower() == header.lower()


@given(st.sampled_from(["X-Cache-TTL", "X-Cache-Threshold"]), seconds_text | st.just("1_0"))
def test_numeric_control_headers_take_ascii_decimals_only(header, value):
    try:
        parse_controls([(header, value)])
    except ControlError as exc:
        assert exc.header == header
    else:
        assert re.fullmatch(r" *[0-9]+ *", value)


def test_cache_control_reads_a_quoted_list_as_one_directive():
    c = parse_controls([("Cache-Control", 'private="set-cookie, x-id", max-age=30')])
    assert c.max_age == 30
    escaped = parse_controls([("Cache-Control", r'private="a\", no-store, max-age=9", max-age=60')])
    assert (escaped.no_store, escaped.max_age) == (False, 60)


@pytest.mark.parametrize(
    "value", ['max-age="5', 'no-store, private="a', r'private="a\"', 'private="a\\']
)
def test_cache_control_with_a_quote_never_closed_is_a_control_error(value):
    with pytest.raises(ControlError) as caught:
        parse_controls([("Cache-Control", value)])
    assert caught.value.header == "Cache-Control" and "never closed" in str(caught.value)


@given(st.text(alphabet=' ",=\\abmx-geos5', max_size=16))
@example('private="a')
def test_a_no_store_line_counts_whatever_the_cache_control_line_before_it(first):
    """Lines joined before parsing let an open quote on one (private="a) swallow a
    no-store on the next: each line is read on its own, an open quote refused."""
    try:
        controls = parse_controls([("Cache-Control", first), ("cache-control", "no-store")])
    except ControlError as exc:
        assert exc.header == "Cache-Control"
    else:
        assert controls.no_store


def test_cache_control_is_read_in_time_linear_in_its_length():
    """A regex that looked ahead to the end at each comma took ~11 s on a 60 KB header of
    `,"`, holding the event loop; reading one directive after another takes milliseconds."""
    started = time.perf_counter()
    for _ in range(5):
        with contextlib.suppress(ControlError):
            parse_controls([("Cache-Control", ',"' * 30_000)])
    assert time.perf_counter() - started < 2.0


@given(st.integers(1, 200))
def test_json_depth(depth):
    value: object = 1
    for _ in range(depth):
        value = [value]
    assert json_depth_exceeds(value, 64) == (depth > 64)


@pytest.mark.parametrize(
    "a,b,guard",
    [
        ("What is 17 times 23?", "What is 17 times 24?", "numbers"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
        ("Why can't I sleep at night?", "Why can I sleep at night?", "negation"),
        ('What does "foo" mean?', 'What does "bar" mean?', "quoted"),
        ("How does parse_args work?", "How does parse_known_args work?", "identifiers"),
        ("How do I learn Python?", "What's the best way to learn Python?", None),
        ("Why did Tesla's stock fall today?", "Why did Tesla's stock rise today?", "opposites"),
        # A verb undone by its prefix, in English and the other languages judged.
        (
            "How do I freeze my card in the app?",
            "How do I unfreeze my card in the app?",
            "opposites",
        ),
        (
            "¿Cómo bloqueo mi tarjeta en la app?",
            "¿Cómo desbloqueo mi tarjeta en la app?",
            "opposites",
        ),
        (
            "Come attivo la verifica in due passaggi?",
            "Come disattivo la verifica in due passaggi?",
            "opposites",
        ),
        ("Did the Senate pass the bill?", "Did the House pass the bill?", "names"),
        ("Why did stocks drop on Thursday?", "Why did stocks drop on Tuesday?", "names"),
        ("Why is Donald Trump so popular?", "Why do people like Trump so much?", None),
        # A name added to a list is one more thing asked about.
        (
            "Is a rail pass worth it for Tokyo, Kyoto and Osaka?",
            "Is a rail pass worth it for Tokyo, Kyoto, Osaka and Hiroshima?",
            "names",
        ),
        (
            "How many people died in the flood?",
            "How many people were injured in the flood?",
            WEIGHED,
        ),
        ("How do I lose weight fast?", "How can I lose weight fast?", None),
        ("Name two rivers in Spain", "Name 2 rivers in Spain", None),
        ("When did World War I end?", "When did World War II end?", "numbers"),
        ("Who was Henry VIII?", "Who was Henry VII?", "numbers"),
        ("What happened in World War II?", "What happened in World War 2?", None),
        ("When did World War Ⅱ end?", "When did World War II end?", None),
        # Ordinals match ordinals and Roman numerals, not counts; "first" may stand alone.
        ("When did the Second World War end?", "When did World War II end?", None),
        ("Who was Henry VIII?", "Who was Henry the Eighth?", None),
        ("Who won the 3rd season?", "Who won the third season?", None),
        ("What is the first step to learn Python?", "How do I start learning Python?", None),
        ("What caused the First World War?", "What caused the Second World War?", "numbers"),
        ("What is the third largest city in India?", "What is the 2nd largest city?", "numbers"),
        ("How many milliseconds are in a second?", "How many milliseconds in a minute?", "numbers"),
        ("What are 3 things to do on a date?", "What to do on a third date?", "numbers"),
        ("What happens in 2 weeks of pregnancy?", "What happens in the second week?", "numbers"),
        ("How far does light go in a second?", "How far does light go in 2 seconds?", "numbers"),
        ("How far does light go in a second?", "How far does light go in one second?", None),
        ("What is the second richest country?", "What is the richest country?", "numbers"),
        ("When did the Second World War end?", "When did World War I end?", "numbers"),
        # A day of a month is one number however it is written.
        ("Is the office open on the 14th of June?", "Is the office open on June 14?", None),
        ("Is the office open on June 14?", "Is the office open on June 15th?", "numbers"),
        # Numerals of one character read as the number they are; the models read "½" as "¼".
        ("How do I add ½ cup of sugar?", "How do I add ¼ cup of sugar?", "numbers"),
        ("What is step ① of the recipe?", "What is step ② of the recipe?", "numbers"),
        ("What is ½ of 10?", "What is 1/2 of 10?", None),
        # A span of time in weeks or years is the same span in days or months, no other.
        ("Do I need a visa for two weeks in Japan?", "visa for 14 days in japan?", None),
        ("What should I pack for a week in Rome?", "packing list for 7 days in rome", None),
        ("What should I pack for a week in Rome?", "packing list for 8 days in rome", "numbers"),
        (
            "Refund still missing, returned it a fortnight ago",
            "refund missing, returned 14 days ago",
            None,
        ),
        (
            "Monthly payment on a loan over 5 years?",
            "monthly payment on a loan over 60 months?",
            None,
        ),
        ("Is my 2 year old talking late?", "is my 18 month old talking late?", "numbers"),
        # ... and apart from the digits beside them: NFKC alone writes "3²" as "32".
        ("What is 3² + 4²?", "What is 32 + 42?", "numbers"),
        ("What is 2¹⁰?", "What is 210?", "numbers"),
        ("What is 2¹⁰?", "What is 2^10?", None),
        ("How do I add 1½ cups of flour?", "How do I add 11/2 cups of flour?", "numbers"),
        ("How do I add 1½ cups of flour?", "How do I add 1 1/2 cups of flour?", None),
        ("What are steps ①② of the recipe?", "What are steps 12 of the recipe?", "numbers"),
        ("Summarize the causes of World War I", "sum up why world war 1 started", None),
        ("What caused WWI?", "What caused WWII?", "numbers"),
        # Digits inside a word are a name; commas group thousands only.
        (
            "Why does [10,9,1].sort() give [1,10,9]?",
            "why does [10, 9, 1].sort() give [1, 10, 9]",
            None,
        ),
        # A camel-cased name is one name however it is cased, and named on one side only
        # it is still a veto.
        ("How do I factory reset my iPhone 13?", "how do i factory reset my iphone13", None),
        (
            "What are the best productivity apps?",
            "What is the best iPhone app for productivity?",
            "identifiers",
        ),
        (
            'Rename the key "user_name" to "userName"',
            'Rename the key "user_name" to "username"',
            "identifiers",
        ),
        # A name's other spellings: hyphens, a title's short form, a month's; "I'm" and
        # "I'll" are no names.
        ("How do I change my WiFi password?", "How do I change my Wi-Fi password?", None),
        ("Write an email to Professor Hahn", "write an email to Prof. Hahn", None),
        ("Reply that I'm back on January 15.", "reply that I'll be back Jan 15", None),
        ("Reply that I'm back on January 15.", "reply that I'll be back June 15", "names"),
        # A unit swapped for another is another value, whatever the number says.
        (
            "my puppy is 8 weeks old, how often should she eat",
            "my puppy is 8 months old, how often should she eat",
            "swapped-word",
        ),
        ("Convert 2.5 cups to liters.", "Convert 2.5 cups to milliliters.", "swapped-word"),
        # ... also where the span in months would make the numbers differ instead, or
        # hyphens join it; a hyphen alone changes nothing.
        (
            "Is my 17 year old daughter a minor?",
            "Is my 17 month old daughter a minor?",
            "swapped-word",
        ),
        (
            "Is my 17-year-old daughter a minor?",
            "Is my 17-month-old daughter a minor?",
            "swapped-word",
        ),
        ("Is my 17-year-old daughter a minor?", "is my 17 year old daughter a minor", None),
        ("Plan a 2-week trip to Japan", "plan a 14 day trip to japan", None),
        # A short form is the word it shortens; "golang" is Go.
        (
            "Can I refill my prescription early because I'm going on vacation?",
            "can i refill my prescription early bc i'm going on vacation",
            None,
        ),
        (
            "How do I read a file line by line in Go?",
            "how do i read a file line by line in golang",
            None,
        ),
        # A currency's sign is its word where the other text says it, else unseen.
        ("Convert 150 euros to dollars", "150€ in dollars?", None),
        ("How much is 20 pounds in dollars?", "20 € in dollars?", "unseen-characters"),
        # Typed all in lowercase, an identifier is the same one; with capitals elsewhere, not.
        (
            "What's the difference between Promise.all and Promise.allSettled?",
            "whats the difference between promise.all and promise.allsettled",
            None,
        ),
        ("Why does my useEffect run twice?", "Why does my UseEffect run twice?", "identifiers"),
        # A fenced block's fences and language tag quote nothing; what it holds still counts.
        (
            "Explain this function:\ndef f(xs):\n    return xs[::-1]",
            "explain this?\n```python\ndef f(xs):\n    return xs[::-1]\n```",
            None,
        ),
        (
            "What does this print?\n```js\nconsole.log(`a${b}`)\n```",
            "What does this print?\n```js\nconsole.log(`b${a}`)\n```",
            "quoted",
        ),
        # A name and its initials name one thing ("U.S." is "US"); other initials do not.
        ("Drive time from Denver to Salt Lake City?", "Denver to SLC drive time?", None),
        ("Deadline to file US taxes for 2024?", "Deadline to file U.S. taxes for 2024?", None),
        ("Send money from the UK to India?", "Send money from the United Kingdom to India?", None),
        ("Cheap flights from Madrid to Boston", "Cheap flights from Madrid to LA", "names"),
        ("Best pizza in New York?", "Best pizza in NJ?", "names"),
        # A place and its people's word name one thing; another place does not.
        ("List three European capitals.", "three capital cities in Europe?", None),
        ("What do Germans eat for breakfast?", "typical breakfast in Germany?", None),
        ("Who was the first Roman emperor?", "Who was the first emperor of Romania?", "names"),
        ("Write a poem for Anna's birthday.", "Write a poem for Ann's birthday.", "names"),
        # "Without" in other words, and "no" that negates nothing.
        ("Give me a recipe for pancakes without eggs", "egg-free pancake recipe pls", None),
        ("Give me a recipe for banana bread without eggs", "eggless banana bread recipe?", None),
        ("Recipe for banana bread without eggs", "recipe for banana bread w/o eggs", None),
        ("Give me a recipe for pancakes", "Give me a recipe for gluten-free pancakes", "negation"),
        ("Unclog a sink without chemicals?", "chemical-free way to unclog a sink?", None),
        ("Tweet about our launch, no hashtags.", "tweet about our launch, skip the hashtags", None),
        ("Palindrome check, no comments.", "palindrome check, leave out comments", None),
        ("Read a CSV and skip the first 2 rows", "read a CSV, skipping its first two rows", None),
        ("Shorten this to 25 words", "Shorten this to 25 words, leave out the price", "negation"),
        ("Can I make a payment on my loan?", "Can I skip a payment on my loan?", "negation"),
        ("Can I switch flights for free?", "can i switch flights at no charge?", None),
        ("What is my invoice number?", "whats my invoice no", None),
        # Numbers spelt out whole, times of day on one clock, "12k" where it reads 12,000.
        ("Convert 64 fluid ounces to liters", "what is sixty-four fl oz in liters?", None),
        ("Convert 64 fluid ounces to liters", "what is sixty-five fl oz in liters?", "numbers"),
        (
            "I sent $500 to the wrong account",
            "I sent five hundred dollars to the wrong account",
            None,
        ),
        (
            "I sent $500 to the wrong account",
            "I sent five thousand dollars to the wrong account",
            "numbers",
        ),
        ("Convert 2.5 cups of flour to grams", "2 1/2 cups of flour in grams?", None),
        ("Convert 2.5 cups of flour to grams", "2½ cups of flour in grams?", None),
        ("Roth IRA withdrawal before 59 and a half?", "roth ira withdrawal before 59.5?", None),
        ("Convert 2 cups of flour to grams", "2 1/2 cups of flour in grams?", "numbers"),
        ("Convert 2.5 cups of flour to grams", "2 1/4 cups of flour in grams?", "numbers"),
        ("Can I send $12,000 today?", "can i send 12k today?", None),
        ("Can I send $12,000 today?", "can i send 120k today?", "numbers"),
        ("What happens to my 401(k) if I quit?", "what happens to my 401k if i quit", None),
        ("I have 5 followers, how do I grow?", "I have 5k followers, how do I grow?", "numbers"),
        (
            "Monthly payment on a 350 loan at 6%?",
            "monthly payment on a 350k loan at 6%?",
            "numbers",
        ),
        ("Can I check out at 2pm?", "can i check out at 14:00", None),
        ("Can I check out at 2pm?", "can i check out at 2am", "numbers"),
        ("Move the 10am meeting", "Move the 10:30 AM meeting", "numbers"),
        ("How long to boil a dozen eggs?", "How long to boil 12 eggs?", None),
        # Characters the models do not see (an unknown token each, or "≠" stripped to "="),
        # and negations of other languages.
        ("Is it true that x ≠ y here?", "Is it true that x = y here?", "unseen-characters"),
        ("What does the 🍕 emoji mean?", "What does the 🍔 emoji mean?", "unseen-characters"),
        ("猫是什么？请介绍一下猫。", "狗是什么？请介绍一下狗。", "unseen-characters"),
        ("Почему небо голубое днём?", "Почему небо не голубое днём?", "unseen-characters"),
        ("Warum ist der Himmel blau?", "Warum ist der Himmel nicht blau?", "negation"),
        ("Why don’t cats like water?", "Why don't cats like water?", None),
        ("What is the best non-fiction book?", "Which non-fiction book is the best?", None),
        # Word forms, a typo, a pronoun "one" and a quote the other side holds unquoted
        # reword a question; they do not change it.
        (
            "What is England's cricket team called?",
            "What is the England cricket team called?",
            None,
        ),
        ("What are embarrassing moments in life?", "What are embarassing moment in life?", None),
        ("How can one earn money online?", "How can I earn money online?", None),
        (
            'Why do we say "bless you" after a sneeze?',
            "Why do we say bless you after a sneeze?",
            None,
        ),
        (
            'Why do we say "bless you" after a sneeze?',
            'Why do we say "cheers" after a sneeze?',
            "quoted",
        ),
        ('What does "!=" mean in Python?', 'What does "==" mean in Python?', "quoted"),
        ('Is "log" a good name here?', "Is catalogue a good name here?", "quoted"),
        ("How much does a house cost?", "How much does a horse cost?", WEIGHED),
        # Two words of the vocabulary one letter apart are two words, not a typo.
        (
            "What are the main benefits of remote work for employees?",
            "What are the main benefits of remote work for employers?",
            WEIGHED,
        ),
        (
            "How far is the nearest planet from us?",
            "How far is the nearest plane from us?",
            WEIGHED,
        ),
        # A swapped value (short, or with a digit) is vetoed outright.
        ("Exchange my jacket for a size M", "Exchange my jacket for a size L", "swapped-word"),
        ("Convert #1E90FF to RGB, please.", "Convert #1E90FE to RGB, please.", "swapped-word"),
        # Another spelling, form or short form of the same word is no swapped word.
        ("How do I change my e-mail address?", "How do I change my email address?", None),
        ("How are black holes formed?", "How do black holes form?", None),
        ("How can I improve my sleep pattern?", "How can I improve my sleeping pattern?", None),
        (
            "What's the diff between TCP and UDP?",
            "What's the difference between TCP and UDP?",
            None,
        ),
        ("How do I change my profile pic?", "How do I change my profile picture?", None),
        ("Which app is best for translation?", "Which app is best to translate?", None),
        (
            "How do I remove all docker images?",
            "How do I delete all docker images?",
            WEIGHED,
        ),
        ("What should I name my dog?", "What should I feed my dog?", WEIGHED),
        # The same words with two parts trading places: another question, unless the parts
        # only sit around "and"/"or"/"vs" or one is merely moved.
        (
            "Liverpool beat Manchester United 2-1 on Sunday.",
            "Manchester United beat Liverpool 2-1 on Sunday.",
            "swapped-roles",
        ),
        (
            "How do I convert a string to an int in Python?",
            "How do I convert an int to a string in Python?",
            "swapped-roles",
        ),
        ("Is Java faster than Python?", "Is Python faster than Java?", "swapped-roles"),
        (
            "What is the difference between match fixing and spot fixing?",
            "What is the difference between spot fixing and match fixing?",
            None,
        ),
        ("Who would win, Batman or Superman?", "Who would win, Superman or Batman?", None),
        ("Cheap flights from London to Paris?", "Cheap flights to Paris from London?", None),
        ("Do I update my email and my password?", "Do I update my password and my email?", None),
        ("Is Spanish similar to Italian?", "Is Italian similar to Spanish?", None),
        ("Is every square a rectangle?", "Is every rectangle a square?", "swapped-roles"),
        (
            "Is Java faster than Python and why?",
            "Is Python faster than Java and why?",
            "swapped-roles",
        ),
        (
            "Some context. " * 20 + "How do I convert a string to an int?",
            "Some context. " * 20 + "How do I convert an int to a string?",
            "swapped-roles",
        ),
    ],
)
def test_guards(a, b, guard):
    if guard == WEIGHED:  # no veto: the calibration weighs the swapped word
        guard, swapped = screen(a, b)
        assert guard is None and swapped
    else:
        assert veto(a, b) == guard


def test_accents_typography_and_fraction_slashes_are_seen():
    """What the models read as its ASCII look-alike: not a difference the guard needs."""
    assert unseen("Résumé tips — “quoted” ½\u200b") == {}
    assert unseen("x ≠ y 🍕 猫") == {"≠": 1, "🍕": 1, "猫": 1}


def test_prices_match_exact_then_longest_prefix():
    table = PriceTable({"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6)})
    assert table.price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)
    assert table.price("gpt-4o-2024-08-06") == Price(2.5, 10)
    assert table.price("openai/gpt-4o") == Price(2.5, 10)
    assert table.price("gpt-4") is None
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.cost("unknown", 10, 10) is None


# Parts drawn from separate words, so that the swap of the two parts is the only one.
FIRST_PART = st.lists(st.sampled_from(["cat", "dog", "red"]), min_size=1, max_size=4)
SECOND_PART = st.lists(st.sampled_from(["river", "ocean", "tall"]), min_size=1, max_size=4)
TAIL = st.lists(st.sampled_from(["today", "here", "again"]), max_size=4)


@given(FIRST_PART, SECOND_PART, st.sampled_from(["chases", "fears", "to", "than"]), TAIL)
def test_parts_trading_places_around_a_role_word_are_vetoed(first, second, role, tail):
    a = " ".join(["why", *first, role, *second, *tail])
    b = " ".join(["why", *second, role, *first, *tail])
    assert veto(a, b) == "swapped-roles"


PLACES = st.sampled_from(["madrid", "boston", "celsius", "fahrenheit", "pdf", "html", "texas"])
OPENERS = st.sampled_from(["cheapest flight from", "how do i get from", "convert", "go from"])


@given(PLACES, PLACES, OPENERS, OPENERS, st.sampled_from(["to", "into"]))
def test_from_x_to_y_is_turned_around_only_by_y_to_x(x, y, first, second, joint):
    """However each side is worded around it, X to Y and Y to X go opposite ways, and X
    to Y twice does not."""
    a, b = f"{first} {x} {joint} {y}?", f"{y} {joint} {x}, {second}?"
    assert turned_around(a, b) == (x != y)
    assert not turned_around(a, f"{second} {x} {joint} {y} please")


@given(FIRST_PART, SECOND_PART, st.sampled_from(["and", "or", "vs", "and the", ""]), TAIL)
def test_parts_trading_places_around_and_or_vs_pass(first, second, joint, tail):
    a = " ".join(["compare", *first, joint, *second, *tail])
    b = " ".join(["compare", *second, joint, *first, *tail])
    assert not swapped_roles(a, b)


def roman(number: int) -> str:
    """An independent spelling of 1..39 in Roman numerals, for the oracle below."""
    tens, units = divmod(number, 10)
    return "X" * tens + ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"][units]


# Two letters or more: not the pronoun I (nor V or X alone).
NUMERALS = {roman(n): str(n) for n in range(1, 40) if len(roman(n)) >= 2}


@given(st.text(alphabet="IVXCL i?-", max_size=30))
def test_roman_numerals_are_read_whole_or_not_at_all(text):
    expected = {NUMERALS[token] for token in re.findall(r"\w+", text) if token in NUMERALS}
    assert set(number_forms(text)) == expected


DIGITS_OF_ORDINAL = {word: digits for digits, word in ORDINAL_DIGITS.items()}


@given(st.sampled_from(sorted(ORDINALS)), st.sampled_from(sorted(ORDINALS)))
def test_ordinals_match_their_own_number_only(first, second):
    asked = f"Who came {first} in the race?"
    assert (veto(asked, f"Who came {second} in the race?") is None) == (first == second)
    spelt = f"Who came {DIGITS_OF_ORDINAL[second]} in the race?"
    assert (veto(asked, spelt) is None) == (first == second)
    # A count is not a rank: "third" is never "3".
    assert veto(asked, f"Who came {ORDINALS[second]} in the race?") == "numbers"


SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.sampled_from([SUPERSCRIPT, SUBSCRIPT]))
def test_superscript_digits_are_a_number_of_their_own(base, raised, script):
    """ "2¹⁰" is 2 and 10, as "2^10" is; not 210."""
    text = f"What is {base}{str(raised).translate(script)}?"
    assert number_forms(text) == number_forms(f"What is {base}^{raised}?")
    assert veto(text, f"What is {base}{raised}?") == "numbers"


@given(st.integers(0, 10**6), st.sampled_from("¼½¾⅓⅔⅕⅛⅞"))
def test_a_fraction_after_digits_is_a_number_of_its_own(whole, fraction):
    """ "1½" is 1 and 1/2, as "1 1/2" is; not 11/2. "½" is "1/2", as before."""
    spelt = normalize("NFKC", fraction).replace("\u2044", "/")
    text = f"Add {whole}{fraction} cups"
    assert number_forms(f"Add {fraction} cups") == number_forms(f"Add {spelt} cups")
    assert number_forms(text) == number_forms(f"Add {whole} {spelt} cups")
    assert veto(text, f"Add {whole}{spelt} cups") == "numbers"


UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()
)
UNITS += "fifteen sixteen seventeen eighteen nineteen".split()
TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def spelt(number: int) -> str:
    """An independent spelling of 0..999,999 in English words, for the oracle below."""
    if number < 20:
        return UNITS[number]
    if number < 100:
        tens, units = divmod(number, 10)
        return TENS_WORDS[tens - 2] + (f"-{UNITS[units]}" if units else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{UNITS[hundreds]} hundred" + (f" and {spelt(rest)}" if rest else "")
    thousands, rest = divmod(number, 1000)
    return f"{spelt(thousands)} thousand" + (f" {spelt(rest)}" if rest else "")


@given(st.integers(0, 999_999))
def test_numbers_spelt_out_are_their_digits(number):
    """ "one" alone is a pronoun, never the number 1."""
    expected = {} if number == 1 else {str(number): frozenset({"cardinal"})}
    assert number_forms(f"Send me {spelt(number)} boxes") == expected
    assert veto(f"Send me {spelt(number)} boxes", f"Send me {number:,} boxes") is None
    assert veto(f"Send me {spelt(number)} boxes", f"Send me {number + 2} boxes") == "numbers"


def test_digits_inside_a_word_are_no_number():
    assert number_forms("restart a k8s deployment, i18n and e2e tests") == {}
    assert set(number_forms("reset my iphone13, convert to mp3")) == {"13", "3"}


def test_acronyms_of_numeral_letters_are_not_numbers():
    text = "Send my CV to the DC office, ML team, CLI tools, MD, IVF and XL size"
    assert number_forms(text) == {}


@settings(max_examples=50)
@given(st.text(max_size=80), st.text(max_size=80))
def test_guards_are_symmetric(a, b):
    assert (veto(a, b) is None) == (veto(b, a) is None)
