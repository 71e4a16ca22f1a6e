"""The compiled kernel's depth decoding agrees with msgspec's typed decoders.

``connectors/book/_l2fast.pyx`` parses Binance depth frames in their compact form
itself and hands everything else to the typed decoders of
``connectors.venues.binance.parse``. These tests hold it to that: on real frames from
every recording, on decimal strings, on generated frames of many shapes and on
mutated real frames, it returns exactly the typed decoder's values or raises exactly
its error. Generated frames are SYNTHETIC; the others are real (see data/PROVENANCE.md
and tests/data/cryptofeed/PROVENANCE.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.book import l2
from connectors.record.detect import merge_recordings
from connectors.venues.binance import parse
from connectors.venues.binance.schemas import WireLevel

pytestmark = pytest.mark.skipif(l2.kernel is None, reason="compiled book kernel not built")

REPO = Path(__file__).resolve().parents[2]
RESOURCES = Path(__file__).parent / "resources" / "binance"
RECORDINGS = [
    [REPO / "data/binance/hftbacktest/spot/btcusdt_20240808.gz"],
    [REPO / "data/binance/hftbacktest/spot/ethusdt_20240809.gz"],
    [REPO / "data/binance/hftbacktest/usdm/btcusdt_20240808.gz"],
    [REPO / "data/binance/hftbacktest/usdm/ethusdt_20240808.gz"],
    [REPO / "tests/data/cryptofeed/BINANCE.ws.1.0"],
    [REPO / "tests/data/cryptofeed/BINANCE_FUTURES.ws.1.0"],
]
LEVELS = msgspec.json.Decoder(list[WireLevel], strict=False)


def envelope_decoder():
    return l2.kernel.DiffDecoder(parse.DEPTH_ENVELOPE, True)


def payload_decoder():
    return l2.kernel.DiffDecoder(parse.DEPTH, False)


def outcome(decode, data):
    """``("ok", fields)`` or ``("error", type, message)`` of one decode."""
    try:
        m = decode(data)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("error", type(exc), str(exc))
    m = getattr(m, "data", m)
    return ("ok", (m.E, m.U, m.u, m.pu, m.b, m.a))


def typed_outcome(data, envelope=True):
    return outcome((parse.DEPTH_ENVELOPE if envelope else parse.DEPTH).decode, data)


@pytest.mark.parametrize("paths", RECORDINGS, ids=lambda p: p[0].parent.name + "/" + p[0].name)
def test_every_recorded_depth_frame_decodes_as_typed_and_takes_the_fast_path(paths):
    dec = envelope_decoder()
    frames = [f.payload for f in merge_recordings(paths) if f.kind == "recv" and b"@depth" in f.payload[:48]]
    assert len(frames) > 100
    for data in frames:
        got = dec.decode(data)
        want = parse.DEPTH_ENVELOPE.decode(data).data
        assert (got.E, got.U, got.u, got.pu, got.b, got.a) == (want.E, want.U, want.u, want.pu, want.b, want.a)
        assert [(p.hex(), s.hex()) for p, s in got.b + got.a] == [(p.hex(), s.hex()) for p, s in want.b + want.a]
        # The compact form Binance sends never needs the typed decoder.
        assert l2.kernel.parse_frame(data) == got


decimals = st.from_regex(r"(0|[1-9][0-9]{0,18})(\.[0-9]{1,24})?", fullmatch=True)
odd_numbers = st.one_of(
    decimals,
    st.from_regex(r"-?[0-9]{0,4}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "", " 1", "1 ", "+1", "0x1", "1_0",
                     "00", "01.5", "1.", ".5", "-0", "-0.0", "0.0", "1e400", "1e-400"]),
    st.text(max_size=6),
)


@settings(max_examples=1000, deadline=None)
@given(price=odd_numbers, size=odd_numbers, quoted=st.booleans())
def test_level_parser_accepts_only_what_msgspec_accepts_with_the_same_doubles(price, size, quoted):
    q = '"' if quoted else ""
    raw = f"[[{json.dumps(price)},{q}{size}{q}]]".encode()
    parsed = l2.kernel.parse_levels(raw)
    try:
        want = LEVELS.decode(raw)
    except (msgspec.DecodeError, UnicodeError):
        assert parsed is None
        return
    if parsed is not None:
        assert parsed == want
        assert parsed == [(float(price), float(size))]
        # bit-identical, not only ==
        assert [(p.hex(), s.hex()) for p, s in parsed] == [(p.hex(), s.hex()) for p, s in want]


@settings(max_examples=1000, deadline=None)
@given(text=decimals)
def test_decimal_strings_round_exactly(text):
    parsed = l2.kernel.parse_levels(f'[["1","{text}"]]'.encode())
    if parsed is not None:  # else: more digits than the fast path takes; msgspec decodes it
        assert parsed[0][1].hex() == float(text).hex()


# -- generated frames -------------------------------------------------------------------

num_text = st.one_of(decimals.map(json.dumps), odd_numbers.map(json.dumps),
                     st.sampled_from(["1", "2.5", "-1", "null", "true", "[]"]))
level_text = st.one_of(
    st.tuples(num_text, num_text).map(lambda t: f"[{t[0]},{t[1]}]"),
    st.tuples(num_text, num_text).map(lambda t: f"[ {t[0]} , {t[1]} ]"),
    st.sampled_from(['["1"]', '["1","2","3"]', "[]", "{}", '"x"', '["0","1"]', '["1","0"]']),
)
levels_text = st.lists(level_text, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
int_text = st.one_of(st.integers(0, 10**18 - 1).map(str),
                     st.sampled_from(["-5", "01", "1.0", "1e3", '"17"', "99999999999999999999",
                                      "null", "0", "-0", "18446744073709551616"]))
str_text = st.one_of(st.just('"depthUpdate"'), st.just('"BTCUSDT"'), st.just('"d\\u0065"'),
                     st.just('"\u00e9"'), st.just("5"), st.just('"\\n"'))
fields = st.lists(
    st.one_of(
        st.tuples(st.just("e"), str_text),
        st.tuples(st.just("s"), str_text),
        st.tuples(st.just("T"), int_text),
        st.tuples(st.just("E"), int_text),
        st.tuples(st.just("U"), int_text),
        st.tuples(st.just("u"), int_text),
        st.tuples(st.just("pu"), int_text),
        st.tuples(st.just("b"), levels_text),
        st.tuples(st.just("a"), levels_text),
        st.tuples(st.just("x"), int_text),
    ),
    max_size=10,
)
canonical = st.fixed_dictionaries({
    "E": st.integers(0, 10**13).map(str), "U": st.integers(0, 10**13).map(str),
    "u": st.integers(0, 10**13).map(str), "b": levels_text, "a": levels_text,
}, optional={"pu": int_text, "T": int_text, "e": str_text, "s": str_text})


def frame(items, sep=",", stream='"btcusdt@depth@100ms"', tail="}}"):
    body = sep.join(f'"{k}":{v}' for k, v in items)
    return f'{{"stream":{stream},"data":{{{body}{tail}'.encode()


@settings(max_examples=800, deadline=None)
@given(items=st.one_of(fields, canonical.map(lambda d: list(d.items()))),
       sep=st.sampled_from([",", ", ", ",\n"]),
       stream=st.sampled_from(['"btcusdt@depth@100ms"', '"x\\"y"', "1", '"\u00e9"']),
       tail=st.sampled_from(["}}", "} }", "}} ", "}}x", "},\"id\":1}", "}"]))
def test_generated_frames_decode_exactly_as_typed(items, sep, stream, tail):
    data = frame(items, sep, stream, tail)
    assert outcome(envelope_decoder().decode, data) == typed_outcome(data)
    payload = data[data.index(b'"data":') + 7 : -len(tail.encode()) + 1 or None]
    assert outcome(payload_decoder().decode, payload) == typed_outcome(payload, envelope=False)


@settings(max_examples=800, deadline=None)
@given(name=st.sampled_from(["spot_depth.json", "usdm_depth.json"]), cut=st.integers(0, 2000),
       junk=st.binary(max_size=3), mode=st.sampled_from(["replace", "insert", "truncate"]))
def test_mutated_real_frames_decode_exactly_as_typed(name, cut, junk, mode):
    frame_ = (RESOURCES / name).read_bytes().strip()
    if mode == "replace":
        data = frame_[:cut] + junk + frame_[cut + len(junk):]
    elif mode == "insert":
        data = frame_[:cut] + junk + frame_[cut:]
    else:
        data = frame_[:cut]
    assert outcome(envelope_decoder().decode, data) == typed_outcome(data)


def test_diff_pickles_and_reads_like_a_depth_update():
    data = (RESOURCES / "usdm_depth.json").read_bytes().strip()
    d = envelope_decoder().decode(data)
    want = parse.DEPTH_ENVELOPE.decode(data).data
    import pickle

    clone = pickle.loads(pickle.dumps(d))
    assert clone == d and clone.b == want.b and clone.a == want.a and clone.pu == want.pu
    assert d.data is d


def test_one_pass_parse_declines_what_it_does_not_know():
    base = (RESOURCES / "usdm_depth.json").read_bytes().strip()
    assert l2.kernel.parse_frame(base) is not None
    for data in (
        base.replace(b'"E":', b'"E" :'),  # whitespace
        base.replace(b'"pu":', b'"x":1,"pu":'),  # an unknown key
        base.replace(b'"b":[', b'"b":[],"b":['),  # a repeated key
        base + b" ",  # trailing bytes
        base.replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"'),  # an escape
    ):
        assert l2.kernel.parse_frame(data) is None, data
        assert outcome(envelope_decoder().decode, data) == typed_outcome(data)
