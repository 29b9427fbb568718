"""Configuration loading: defaults, a full file, and a named error for each mistake."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import inspect as mi

from contract.market import DEFAULT_MARKETS, Market
from contract.settings import (
    Account,
    Config,
    Count,
    EngineConfig,
    GatewayConfig,
    LimitsConfig,
    MarketDataConfig,
    NonEmptyStr,
    PositiveFloat,
    RedisConfig,
)
from streamex.cli import main
from streamex.config import (
    ConfigError,
    decode_table,
    dump_config,
    load_config,
    parse_config,
    service_config,
)

FULL = """
[redis]
url = "redis://10.1.2.3:6380/0"

[gateway]
host = "0.0.0.0"
port = 9001

[marketdata]
host = "0.0.0.0"
port = 9002

[engine]
snapshot_every = 500
snapshot_interval_s = 5
batch_size = 64
block_ms = 20
lease_ms = 1500
out_retention = 1000

[limits]
connection_rate = 50.5
connection_burst = 100
account_rate = 200
account_burst = 400
max_backlog = 5000

[[markets]]
symbol = "SOL-USDT"
base = "SOL"
quote = "USDT"
tick_size = "0.005"
lot_size = "0.1"
min_qty = "0.1"
max_qty = "100000"
min_price = "0.005"
max_price = "10000"

[[markets]]
symbol = "BTC-USD"
base = "BTC"
quote = "USD"
tick_size = "0.5"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "100"
min_price = "1"
max_price = "500000"

[[accounts]]
id = "alice"
api_key = "ak-alice"
secret = "s3cret-a"

[[accounts]]
id = "bob"
api_key = "ak-bob"
secret = "s3cret-b"
"""

MARKET: dict[str, Any] = {
    "symbol": "SOL-USDT",
    "base": "SOL",
    "quote": "USDT",
    "tick_size": "0.01",
    "lot_size": "0.1",
    "min_qty": "0.1",
    "max_qty": "1000",
    "min_price": "0.01",
    "max_price": "1000",
}
ACCOUNT: dict[str, Any] = {"id": "alice", "api_key": "ak-alice", "secret": "s"}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.message


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.markets == DEFAULT_MARKETS
    assert [m.symbol for m in config.markets] == ["BTC-USD", "ETH-USD"]
    assert config.accounts == ()
    assert config.redis == RedisConfig(url=None)
    assert config.gateway == GatewayConfig(host="127.0.0.1", port=8001)
    assert config.marketdata == MarketDataConfig(host="127.0.0.1", port=8002)
    assert config.engine == EngineConfig(
        snapshot_every=10_000, snapshot_interval_s=30.0, batch_size=512, block_ms=100,
        lease_ms=3000, out_retention=1_000_000,
    )
    assert config.limits.max_backlog == 100_000
    assert config.market("ETH-USD").lot_size == "0.001"


def test_empty_file_and_empty_sections_give_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_config(path) == Config()
    path.write_text("[gateway]\n[engine]\n[limits]\n[redis]\n")
    assert load_config(str(path)) == Config()


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "streamex.toml"
    path.write_text(FULL)
    config = load_config(path)
    assert config.redis.url == "redis://10.1.2.3:6380/0"
    assert config.gateway == GatewayConfig(host="0.0.0.0", port=9001)
    assert config.marketdata == MarketDataConfig(host="0.0.0.0", port=9002)
    assert config.engine == EngineConfig(
        snapshot_every=500, snapshot_interval_s=5.0, batch_size=64, block_ms=20,
        lease_ms=1500, out_retention=1000,
    )
    assert isinstance(config.engine.snapshot_interval_s, float)
    assert config.limits == LimitsConfig(
        connection_rate=50.5, connection_burst=100, account_rate=200.0, account_burst=400,
        max_backlog=5000,
    )
    assert [m.symbol for m in config.markets] == ["SOL-USDT", "BTC-USD"]
    sol = config.market("SOL-USDT")
    assert sol.parse_price("1.005") == 201
    assert sol.format_qty(15) == "1.5"
    assert config.market("BTC-USD").tick_size == "0.5"
    assert set(config.markets_by_symbol) == {"SOL-USDT", "BTC-USD"}
    assert config.accounts == (
        Account("alice", "ak-alice", "s3cret-a"),
        Account("bob", "ak-bob", "s3cret-b"),
    )
    assert config.accounts_by_api_key["ak-bob"].id == "bob"
    with pytest.raises(KeyError):
        config.market("ETH-USD")


def test_secret_is_not_in_repr() -> None:
    assert "s3cret" not in repr(Account("alice", "ak", "s3cret"))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*nope.toml"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nport = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tick_size", "0", "markets[1].tick_size: must be positive"),
        ("tick_size", "-0.01", "markets[1].tick_size: not a plain decimal string"),
        ("lot_size", "abc", "markets[1].lot_size: not a plain decimal string"),
        ("min_qty", "0.05", "markets[1].min_qty: must be a positive multiple of lot_size"),
        ("max_price", "1000.001", "markets[1].max_price: must be a positive multiple of tick_size"),
        ("min_qty", "5000", "markets[1].min_qty: greater than max_qty"),
        ("symbol", "sol-usdt", "markets[1].symbol: 'sol-usdt' is not like 'BTC-USD'"),
        ("tick_size", 0.01, 'markets[1].tick_size: must be a string (write decimals as "0.01")'),
        ("base", 7, "markets[1].base: must be a string"),
    ],
)
def test_bad_market_field_is_named(field: str, value: object, message: str) -> None:
    second = {**MARKET, field: value}
    error = _error({"markets": [MARKET | {"symbol": "ABC-USD"}, second]})
    assert error.startswith(message)


def test_market_missing_field_and_unknown_key() -> None:
    incomplete = {k: v for k, v in MARKET.items() if k != "max_qty"}
    assert _error({"markets": [incomplete]}) == "markets[0].max_qty: required"
    extra = MARKET | {"step": "0.1"}
    assert _error({"markets": [extra]}).startswith("markets[0].step: unknown key")


def test_duplicate_and_empty_markets() -> None:
    assert _error({"markets": [MARKET, MARKET]}) == "markets[1].symbol: duplicate market 'SOL-USDT'"
    assert _error({"markets": []}) == "markets: must list at least one market"
    assert _error({"markets": {"symbol": "X"}}).startswith("markets: must be an array of tables")
    assert _error({"markets": ["BTC-USD"]}) == "markets[0]: must be a table"


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ({"api_key": "k", "secret": "s"}, "accounts[1].id: required"),
        ({"id": "", "api_key": "k", "secret": "s"}, "accounts[1].id: must be a non-empty string"),
        ({"id": "b", "api_key": 5, "secret": "s"},
         "accounts[1].api_key: must be a non-empty string"),
        ({"id": "b", "api_key": "k"}, "accounts[1].secret: required"),
        ({"id": "alice", "api_key": "k", "secret": "s"},
         "accounts[1].id: duplicate account id 'alice'"),
        ({"id": "bob", "api_key": "ak-alice", "secret": "s"},
         "accounts[1].api_key: duplicate api_key"),
        ({"id": "bob", "api_key": "k", "secret": "s", "role": "admin"},
         "accounts[1].role: unknown key"),
    ],
)
def test_bad_account_is_named(account: dict[str, Any], message: str) -> None:
    assert _error({"accounts": [ACCOUNT, account]}).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gateway": {"port": "8001"}}, "gateway.port: must be an integer in 1..65535"),
        ({"gateway": {"port": 0}}, "gateway.port: must be an integer in 1..65535"),
        ({"marketdata": {"port": 70000}}, "marketdata.port: must be an integer in 1..65535"),
        ({"marketdata": {"port": 8002.0}}, "marketdata.port: must be an integer in 1..65535"),
        ({"gateway": {"port": True}}, "gateway.port: must be an integer in 1..65535"),
        ({"gateway": {"host": ""}}, "gateway.host: must be a non-empty string"),
        ({"gateway": {"hots": "x"}}, "gateway.hots: unknown key"),
        ({"gateway": 8001}, "gateway: must be a table"),
        ({"redis": {"url": 6379}}, "redis.url: must be a non-empty string"),
        ({"redis": {"url": "localhost:6379"}}, "redis.url: must start with redis://"),
        ({"engine": {"batch_size": 0}}, "engine.batch_size: must be an integer in 1.."),
        ({"engine": {"snapshot_every": "10"}}, "engine.snapshot_every: must be an integer"),
        ({"engine": {"snapshot_interval_s": 0}}, "engine.snapshot_interval_s: must be a positive"),
        ({"engine": {"snapshot_interval_s": float("inf")}},
         "engine.snapshot_interval_s: must be a positive"),
        ({"engine": {"block_ms": 500, "lease_ms": 400}},
         "engine.lease_ms: must be greater than engine.block_ms"),
        ({"engine": {"out_retention": -1}}, "engine.out_retention: must be an integer"),
        ({"limits": {"account_rate": "10"}}, "limits.account_rate: must be a positive number"),
        ({"limits": {"connection_burst": 1.5}}, "limits.connection_burst: must be an integer"),
        ({"limits": {"max_backlog": 0}}, "limits.max_backlog: must be an integer"),
        ({"limits": {"rate": 1}}, "limits.rate: unknown key"),
        ({"gatway": {}}, "gatway: unknown key"),
    ],
)
def test_bad_scalar_is_named(data: dict[str, Any], message: str) -> None:
    assert _error(copy.deepcopy(data)).startswith(message)


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(FULL)
    assert main(["config-check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok: 2 markets (SOL-USDT, BTC-USD), 2 accounts" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nport = '8001'\n")
    assert main(["config-check", str(bad)]) == 1
    assert "gateway.port: must be an integer in 1..65535" in capsys.readouterr().err


def test_readme_example_is_valid_and_shows_the_defaults() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    example_config = parse_config(tomllib.loads(example))
    assert example_config.accounts == (Account("alice", "alice-key", "alice-secret",
                                               balances={"USD": "100000", "BTC": "2"}),)
    assert example_config.markets == (DEFAULT_MARKETS[0],)
    defaults = Config()
    for section in ("redis", "gateway", "marketdata", "engine", "limits"):
        assert getattr(example_config, section) == getattr(defaults, section), section


def test_dump_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(FULL)
    full = load_config(path)
    assert parse_config(tomllib.loads(dump_config(full))) == full
    assert parse_config(tomllib.loads(dump_config(Config()))) == Config()
    tricky = Config(accounts=(Account('q"uo\\te', "k\n\x7f\u00e9\U0001f600", "s\t"),))
    text = dump_config(tricky)
    assert parse_config(tomllib.loads(text)) == tricky
    assert "[redis]" not in dump_config(Config())


def test_service_config_takes_the_redis_url_from_the_flag_then_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[redis]\nurl = "redis://127.0.0.1:7000/0"\n')
    assert service_config(path, None)[1] == "redis://127.0.0.1:7000/0"
    assert service_config(path, "redis://127.0.0.1:7001/0")[1] == "redis://127.0.0.1:7001/0"
    with pytest.raises(ConfigError, match="--redis-url"):
        service_config(None, None)


# -- the schema gives every setting its error message -------------------------


class _Extra(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A section as a new feature would add it: one annotated line a setting."""

    workers: Annotated[int, msgspec.Meta(ge=2, le=64)] = 4
    depth: Count = 10
    ratio: PositiveFloat = 0.5
    share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    label: NonEmptyStr = "x"
    code: Annotated[str, msgspec.Meta(max_length=3)] = "abc"
    verbose: bool = False


class _Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    extra: _Extra = _Extra()
    items: tuple[_Extra, ...] = ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"extra": {"workers": 1}}, "extra.workers: must be an integer in 2..64"),
        ({"extra": {"workers": 4.0}}, "extra.workers: must be an integer in 2..64"),
        ({"extra": {"depth": 0}}, "extra.depth: must be an integer in 1..2147483647"),
        ({"extra": {"ratio": -1}}, "extra.ratio: must be a positive number"),
        ({"extra": {"ratio": float("nan")}}, "extra.ratio: must be a positive number"),
        ({"extra": {"share": 2}}, "extra.share: must be a number in 0..1"),
        ({"extra": {"label": ""}}, "extra.label: must be a non-empty string"),
        ({"extra": {"code": "abcd"}}, "extra.code: must be a string of length <= 3"),
        ({"extra": {"label": 1.5}},
         'extra.label: must be a non-empty string (write decimals as "0.01")'),
        ({"extra": {"code": 1}}, "extra.code: must be a string of length <= 3"),
        ({"extra": {"verbose": 1}}, "extra.verbose: must be true or false"),
        ({"extra": {"nope": 1}},
         "extra.nope: unknown key (expected one of workers, depth, ratio, share, label, code, "
         "verbose)"),
        ({"extra": []}, "extra: must be a table ([extra])"),
        ({"items": {}}, "items: must be an array of tables ([[items]])"),
        ({"items": [{}, 3]}, "items[1]: must be a table"),
        ({"items": [{"workers": 99}]}, "items[0].workers: must be an integer in 2..64"),
    ],
)
def test_a_new_setting_gets_its_error_message_from_its_annotation(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        decode_table(data, _Schema)
    assert info.value.message == message
    assert decode_table({"extra": {"ratio": 2}}, _Schema).extra.ratio == 2.0


def _sections() -> list[tuple[str, mi.Field]]:
    config = mi.type_info(Config)
    assert isinstance(config, mi.StructType)
    return [
        (section.name, field)
        for section in config.fields
        if isinstance(section.type, mi.StructType)
        for field in section.type.fields
    ]


@pytest.mark.parametrize(("section", "field"), _sections(), ids=lambda x: getattr(x, "name", x))
def test_every_section_setting_has_a_worded_message(section: str, field: mi.Field) -> None:
    # A wrong type anywhere gives "must be ...", never msgspec's own wording.
    arrays = (mi.ListType, mi.VarTupleType, mi.TupleType, mi.SetType, mi.FrozenSetType)
    wrong: Any = 1 if isinstance(field.type, arrays) else [1]
    message = _error({section: {field.name: wrong}})
    assert message.startswith(f"{section}.{field.name}: must be "), message
    assert "Expected" not in message


def test_readme_error_examples_are_what_the_code_prints() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    examples = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    inputs: dict[str, dict[str, Any]] = {
        "gateway.port: must be an integer in 1..65535": {"gateway": {"port": "8001"}},
        "markets[1].tick_size: must be positive":
            {"markets": [MARKET | {"symbol": "ABC-USD"}, MARKET | {"tick_size": "0"}]},
        'markets[0].tick_size: must be a string (write decimals as "0.01")':
            {"markets": [MARKET | {"tick_size": 0.01}]},
        "markets[0].max_qty: required":
            {"markets": [{k: v for k, v in MARKET.items() if k != "max_qty"}]},
        "gateway.hots: unknown key (expected one of host, port)": {"gateway": {"hots": "x"}},
        "engine.lease_ms: must be greater than engine.block_ms":
            {"engine": {"block_ms": 500, "lease_ms": 400}},
    }
    assert examples == list(inputs)
    for message, data in inputs.items():
        assert _error(data) == message


def test_structs_built_directly_skip_the_constraints_but_keep_the_cross_field_rules() -> None:
    assert GatewayConfig(port=0).port == 0  # tests listen on port 0
    with pytest.raises(ValueError, match="^markets: must list at least one market"):
        Config(markets=())
    with pytest.raises(ValueError, match="^accounts\\[1\\].api_key: duplicate api_key"):
        Config(accounts=(Account("a", "k", "s"), Account("b", "k", "s")))
    with pytest.raises(ValueError, match="^lease_ms: must be greater than engine.block_ms"):
        EngineConfig(block_ms=100, lease_ms=100)
    with pytest.raises(ValueError, match="^url: must start with redis://"):
        RedisConfig(url="localhost:6379")


def test_lookups_are_derived_not_encoded_and_follow_replace() -> None:
    alice = Account("alice", "ak-alice", "s3cret-a")
    config = Config(accounts=(alice,))
    assert config.accounts_by_api_key == {"ak-alice": alice}
    assert "by_symbol" not in dump_config(config) and "by_api_key" not in dump_config(config)
    assert "markets_by_symbol" not in msgspec.to_builtins(config)
    replaced = msgspec.structs.replace(config, accounts=(), markets=DEFAULT_MARKETS[1:])
    assert replaced.accounts_by_api_key == {}
    assert list(replaced.markets_by_symbol) == ["ETH-USD"]
    assert replaced == Config(markets=DEFAULT_MARKETS[1:])
    with pytest.raises(TypeError):
        replaced.markets_by_symbol["X"] = DEFAULT_MARKETS[0]  # type: ignore[index]


_MARKET_POOL = (
    *DEFAULT_MARKETS,
    Market(**MARKET),
    Market("X1-Y2", "X1", "Y2", "0.5", "1", "1", "9", "0.5", "100.5"),
)


def _values(node: mi.Type) -> st.SearchStrategy[Any]:
    """Every value the declared type accepts, bounds included (for the settings' types)."""
    if isinstance(node, mi.UnionType):
        return st.one_of([_values(t) for t in node.types])
    if isinstance(node, mi.NoneType):
        return st.none()
    if isinstance(node, mi.IntType):
        return st.integers(node.ge, node.le)
    if isinstance(node, mi.FloatType):
        return st.floats(min_value=node.gt, max_value=node.le, exclude_min=True,
                         allow_nan=False, allow_infinity=False)
    if isinstance(node, mi.StrType):
        return st.text(min_size=node.min_length or 0)
    raise AssertionError(f"no strategy for {node}: extend _values")


def _section(cls: type[Any]) -> st.SearchStrategy[Any]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)

    def build(values: dict[str, Any]) -> Any:
        try:
            return cls(**values)
        except ValueError:  # a cross-field rule (lease_ms > block_ms, the url's scheme)
            return None

    fields = {f.name: _values(f.type) for f in info.fields}
    return st.fixed_dictionaries(fields).map(build).filter(lambda s: s is not None)


_configs = st.builds(
    Config,
    markets=st.lists(st.sampled_from(_MARKET_POOL), min_size=1, unique_by=lambda m: m.symbol)
    .map(tuple),
    accounts=st.lists(
        st.builds(Account, st.text(min_size=1), st.text(min_size=1), st.text(min_size=1)),
        unique_by=(lambda a: a.id, lambda a: a.api_key),
    ).map(tuple),
    redis=st.builds(RedisConfig, st.none() | st.text().map(lambda s: "redis://" + s)),
    gateway=_section(GatewayConfig),
    marketdata=_section(MarketDataConfig),
    engine=_section(EngineConfig),
    limits=_section(LimitsConfig),
)


@settings(max_examples=200, deadline=None)
@given(_configs)
def test_dump_config_round_trips_any_config(config: Config) -> None:
    loaded = parse_config(tomllib.loads(dump_config(config)))
    assert loaded == config
    assert msgspec.to_builtins(loaded) == msgspec.to_builtins(config)
    assert [type(v) for v in msgspec.structs.astuple(loaded.limits)] == [
        type(v) for v in msgspec.structs.astuple(config.limits)
    ]


# -- secrets kept in their own files ------------------------------------------------------


def test_accounts_file_adds_its_accounts_and_is_not_kept(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\nid = "bob"\napi_key = "ak-bob"\nsecret = "s-b"\n')
    main_file = tmp_path / "streamex.toml"
    main_file.write_text(f'accounts_file = "{accounts}"\n\n[[accounts]]\nid = "alice"\n'
                         'api_key = "ak-alice"\nsecret = "s-a"\n')
    config = load_config(main_file)
    assert [a.id for a in config.accounts] == ["alice", "bob"]
    assert config.accounts_file is None  # read once; a dump holds the accounts themselves
    assert load_config_text(dump_config(config), tmp_path) == config


def load_config_text(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "dumped.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ("[[accounts]]\nid = 'x'\n", "accounts[0].api_key: required"),
    ("[gateway]\nport = 1\n", "gateway: unknown key (expected one of accounts)"),
    ('[[accounts]]\nid = "alice"\napi_key = "other"\nsecret = "s"\n',
     "accounts_file: accounts[1].id: duplicate account id 'alice'"),
])
def test_a_bad_accounts_file_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    accounts = tmp_path / "accounts.toml"
    if content is not None:
        accounts.write_text(content)
    main_file = tmp_path / "streamex.toml"
    main_file.write_text(f'accounts_file = "{accounts}"\n\n[[accounts]]\nid = "alice"\n'
                         'api_key = "ak-alice"\nsecret = "s-a"\n')
    with pytest.raises(ConfigError) as info:
        load_config(main_file)
    assert message in info.value.message


def test_redis_password_file_goes_into_the_url(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p@ss/word\n")
    path = tmp_path / "streamex.toml"
    path.write_text(f'[redis]\nurl = "redis://redis:6379/0"\npassword_file = "{secret}"\n')
    config = load_config(path)
    assert config.redis.url == "redis://:p%40ss%2Fword@redis:6379/0"
    assert config.redis.password_file is None
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="redis.password_file: .* is empty"):
        load_config(path)
    secret.unlink()
    with pytest.raises(ConfigError, match="redis.password_file: cannot read"):
        load_config(path)


@pytest.mark.parametrize(("url", "with_pw", "shown"), [
    ("redis://h:1/0", "redis://:pw@h:1/0", "redis://h:1/0"),
    ("redis://:old@h:1/0", "redis://:pw@h:1/0", "redis://h:1/0"),
    ("redis://me@h:1/0", "redis://me:pw@h:1/0", "redis://me@h:1/0"),
    ("unix:///run/r.sock?db=0", "unix://:pw@/run/r.sock?db=0", "unix:///run/r.sock?db=0"),
    ("rediss://h:6380/2", "rediss://:pw@h:6380/2", "rediss://h:6380/2"),
])
def test_urls_take_and_hide_a_password(url: str, with_pw: str, shown: str) -> None:
    from redis.connection import parse_url

    from streamex.config import display_url, with_password

    assert with_password(url, "pw") == with_pw
    assert parse_url(with_pw)["password"] == "pw"
    assert display_url(with_pw) == shown


def test_a_config_can_come_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('[gateway]\nport = 9001\n'))
    assert load_config("-").gateway.port == 9001


def test_account_balances_must_fit_the_assets_units(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[accounts]]\nid = "a"\napi_key = "k"\nsecret = "s"\n'
                    'balances = { BTC = "0.00001" }\n')  # BTC has 4 decimals
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.balances\.BTC: .*more than 4"):
        load_config(path)
    path.write_text('[[accounts]]\nid = "a"\napi_key = "k"\nsecret = "s"\n'
                    'balances = { DOGE = "1" }\n')
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.balances\.DOGE: no market"):
        load_config(path)
