"""Hostile input: random text and random mutations of valid configurations give a
ConfigError (with a line inside the text) or a Config -- never any other exception."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecmta.config import Config, ConfigError, load_config_text
from ecmta.config import xmldump
from ecmta.config.parser import parse, parse_value
from ecmta.tests.config.test_console_config import PAGE_CONFIG
from ecmta.tests.config.test_validate import EXAMPLE_15_2, EXAMPLE_B, EXAMPLE_C, THREADPOOL_PAGE

SEEDS = [EXAMPLE_15_2, EXAMPLE_B, EXAMPLE_C, THREADPOOL_PAGE, PAGE_CONFIG]
SPECIAL = st.sampled_from(list('{}[]()"\'=#/*,\n\t \\:.-0x') + ["/*", "*/", "include", "\u201c", "\x00",
                                                                "Domain", "Listen", "ThreadPool", "9" * 30])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str):
    for unbuilt in (False, True):
        try:
            cfg = load_config_text(text, "fuzz.conf", allow_unbuilt=unbuilt)
        except ConfigError as exc:
            lines = text.count("\n") + 1
            for issue in exc.errors:
                assert issue.file is None or issue.file == "fuzz.conf" or issue.file.startswith("/")
                assert 0 <= issue.line <= lines
            assert str(exc)
            continue
        assert isinstance(cfg, Config)
        # Anything that loads also survives the XML round trip.
        assert xmldump.loads(xmldump.dumps(cfg), allow_unbuilt=True) == cfg


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    check(text)


@FUZZ
@given(st.lists(st.one_of(SPECIAL, st.text(max_size=8)), max_size=80).map("".join))
def test_random_token_soup(text):
    check(text)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 20)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "replace"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(SPECIAL) + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(st.text(max_size=5)) + text[j:]
    return text


@FUZZ
@given(mutated())
def test_mutated_valid_configs(text):
    check(text)


@FUZZ
@given(st.text(max_size=200))
def test_parse_and_parse_value_only_raise_config_errors(text):
    for fn in (parse, parse_value):
        try:
            fn(text)
        except ConfigError:
            pass


def test_seeds_are_valid_with_allow_unbuilt():
    for text in SEEDS[1:]:
        load_config_text(text, "seed.conf", allow_unbuilt=True)
