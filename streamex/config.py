"""streamex configuration: one TOML file read once at start-up.

``load_config(path)`` reads the file with :mod:`tomllib` and hands the table to
``parse_config``, which decodes it with msgspec into the frozen Structs of
:mod:`contract.settings`. The schema lives there, one annotated line a setting
(type, constraints, default); nothing here knows a field by name. A missing
section means its defaults; ``load_config(None)`` means all defaults (the two
``DEFAULT_MARKETS``, no accounts, an embedded Redis server).

Any mistake raises :class:`ConfigError` whose message starts with the field's
path, e.g. ``markets[1].tick_size: must be positive`` or
``gateway.port: must be an integer in 1..65535``: :func:`_config_error`
rewrites msgspec's ``ValidationError``, describing what the field must be from
its declared type and constraints. Unknown keys are mistakes too, and types are
exact: a port written as ``"8001"``, ``8001.0`` or ``true`` is rejected (an
integer is fine where a number is expected).

``dump_config(config)`` writes a Config back as TOML that loads to an equal
Config.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import msgspec
from msgspec import inspect as mi

from contract.settings import Account, Config

_S = TypeVar("_S", bound=msgspec.Struct)


class ConfigError(ValueError):
    """A bad configuration; the message names the offending field's path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- loading ------------------------------------------------------------------


def load_config(path: str | Path | None) -> Config:
    """Read and check a TOML configuration file; ``None`` gives the defaults, ``"-"`` stdin.

    The files it names are read too: ``accounts_file``'s ``[[accounts]]`` are
    added to the accounts, and ``[redis] password_file``'s password is put
    into ``[redis] url``; the Config returned names neither file. Raises
    :class:`ConfigError` when a file cannot be read, is not valid TOML, or
    any field is wrong.
    """
    if path is None:
        return Config()
    config = parse_config(_read_toml(path))
    if config.accounts_file is not None:
        extra = decode_table(_read_toml(config.accounts_file), _AccountsFile)
        try:
            config = msgspec.structs.replace(config, accounts_file=None,
                                             accounts=config.accounts + extra.accounts)
        except ValueError as exc:  # a duplicate id or api_key across the two files
            raise ConfigError(f"accounts_file: {exc}") from None
    redis = config.redis
    if redis.password_file is not None:
        password = _read_secret(redis.password_file, "redis.password_file")
        url = None if redis.url is None else with_password(redis.url, password)
        config = msgspec.structs.replace(config, redis=msgspec.structs.replace(
            redis, url=url, password_file=None))
    return config


class _AccountsFile(msgspec.Struct, forbid_unknown_fields=True):
    """What an ``accounts_file`` holds: ``[[accounts]]`` tables and nothing else."""

    accounts: tuple[Account, ...] = ()


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        if str(path) == "-":
            return tomllib.loads(sys.stdin.read())
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _read_secret(path: str, field: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise ConfigError(f"{field}: {path} is empty")
    return text


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in it (``redis://:PASSWORD@host:port/db``; unix URLs too)."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return _unsplit(parts.scheme, netloc, parts.path, parts.query)


def display_url(url: str) -> str:
    """``url`` without its password, to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}@{host}" if user else host
    return _unsplit(parts.scheme, netloc, parts.path, parts.query)


def _unsplit(scheme: str, netloc: str, path: str, query: str) -> str:
    # urlunsplit would drop the "//" of "unix:///path" (its netloc is empty).
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def parse_config(data: Mapping[str, Any]) -> Config:
    """Check a configuration table (as ``tomllib`` returns it) and build the Config."""
    return decode_table(data, Config)


def decode_table(data: Mapping[str, Any], schema: type[_S]) -> _S:
    """Decode a TOML table into the settings Struct ``schema``, or raise ConfigError.

    Types are strict (no str -> int, float -> int or bool -> int), except that an
    int is taken where a float is declared. O(size of the table).
    """
    try:
        return msgspec.convert(dict(data), type=schema, strict=True)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, schema) from None


def service_config(path: str | Path | None, redis_url: str | None) -> tuple[Config, str]:
    """Configuration and Redis URL of a service process (engine, gateway, marketdata).

    ``redis_url`` (from ``--redis-url``) wins over ``[redis] url``; a service
    never starts an embedded server (``streamex up`` does). Raises
    ConfigError naming the field, or saying how to give a Redis URL.
    """
    config = load_config(path)
    url = redis_url or config.redis.url
    if not url:
        raise ConfigError("no Redis: pass --redis-url or set [redis] url in the config "
                          "(streamex up starts an embedded server)")
    return config, url


# -- errors: msgspec's ValidationError -> "path: what it must be" -------------

_AT = re.compile(r"(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_KEY = re.compile(r"Object (?P<problem>missing required|contains unknown) field `(?P<key>[^`]*)`")
_GOT = re.compile(r", got `(?P<got>[^`]*)`")
_STEP = re.compile(r"\.?(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def _config_error(exc: msgspec.ValidationError, schema: type[msgspec.Struct]) -> ConfigError:
    """The ConfigError for a failed decode: ``<path>: <message>``, path without ``$.``.

    msgspec says ``<text> - at `$.<path>``` (no ``- at`` at the top level), where
    text is a missing or unknown field, a type or constraint failure
    (``Expected `int` >= 1``), or the ``ValueError`` of a ``__post_init__``,
    which already starts with the field's name (``tick_size: must be positive``).
    """
    match = _AT.fullmatch(str(exc))
    assert match is not None  # the pattern matches any text
    text, path = match["text"], (match["path"] or "").removeprefix(".")
    key = _KEY.fullmatch(text)
    if key and key["problem"] == "missing required":
        return ConfigError(f"{_join(path, key['key'])}: required")
    if key:
        table = _type_at(schema, path)
        known = [f.encode_name for f in table.fields] if isinstance(table, mi.StructType) else []
        expected = f" (expected one of {', '.join(known)})" if known else ""
        return ConfigError(f"{_join(path, key['key'])}: unknown key{expected}")
    if text.startswith(("Expected `", "Invalid enum value")):
        got = _GOT.search(text)
        must = _must_be(_type_at(schema, path), path, got["got"] if got else None) or text
        return ConfigError(f"{path}: {must}" if path else must)
    return ConfigError(_join(path, text))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_at(schema: type[msgspec.Struct], path: str) -> mi.Type | None:
    """The declared type at ``path`` (``markets[1].tick_size``), None if there is none."""
    node: mi.Type | None = _concrete(mi.type_info(schema))
    for step in _STEP.finditer(path):
        if step["key"] is not None and isinstance(node, mi.StructType):
            node = next((f.type for f in node.fields if f.encode_name == step["key"]), None)
        elif step["index"] is not None and isinstance(node, mi.VarTupleType | mi.ListType):
            node = node.item_type
        else:
            return None
        node = _concrete(node)
    return node


def _concrete(node: mi.Type | None) -> mi.Type | None:
    """``X | None`` -> ``X`` (TOML has no null), metadata unwrapped."""
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.UnionType):
        types = [t for t in node.types if not isinstance(t, mi.NoneType)]
        if len(types) == 1:
            return _concrete(types[0])
    return node


def _must_be(node: mi.Type | None, path: str, got: str | None) -> str | None:
    """What a value of the declared type ``node`` must be, in words; None if unknown."""
    if isinstance(node, mi.IntType):
        lo = node.ge if node.gt is None else node.gt + 1
        hi = node.le if node.lt is None else node.lt - 1
        return "must be an integer" + _bounds(lo, hi)
    if isinstance(node, mi.FloatType):
        hi_f = None if node.le == sys.float_info.max else node.le  # that bound means "finite"
        if node.gt == 0 and node.ge is None and node.lt is None and hi_f is None:
            return "must be a positive number"
        if node.ge is not None and hi_f is not None:
            return f"must be a number in {node.ge}..{hi_f}"
        bounds = [f"{op} {v}" for op, v in ((">", node.gt), (">=", node.ge), ("<", node.lt),
                                            ("<=", hi_f)) if v is not None]
        return " ".join(["must be a number", " and ".join(bounds)]).rstrip()
    if isinstance(node, mi.StrType):
        if node.min_length == 1 and node.max_length is None:
            text = "must be a non-empty string"
        else:
            text = "must be a string" + _bounds(node.min_length, node.max_length, " of length")
        if node.pattern is not None:
            text += f" matching {node.pattern!r}"
        return text + (' (write decimals as "0.01")' if got == "float" else "")
    if isinstance(node, mi.BoolType):
        return "must be true or false"
    if isinstance(node, mi.LiteralType):
        return "must be one of " + ", ".join(f'"{v}"' if isinstance(v, str) else str(v)
                                             for v in node.values)
    if isinstance(node, mi.StructType):
        in_array = path.endswith("]") or not path
        return "must be a table" if in_array else f"must be a table ([{_table_name(path)}])"
    if isinstance(node, mi.VarTupleType | mi.ListType):
        if isinstance(_concrete(node.item_type), mi.StructType):
            return f"must be an array of tables ([[{_table_name(path)}]])"
        return "must be an array"
    return None


def _bounds(lo: int | None, hi: int | None, what: str = "") -> str:
    if lo is not None and hi is not None:
        return f"{what} in {lo}..{hi}"
    if lo is not None:
        return f"{what} >= {lo}"
    return f"{what} <= {hi}" if hi is not None else ""


def _table_name(path: str) -> str:
    """The TOML table header of ``path``: ``markets[0].x`` -> ``markets.x``."""
    return re.sub(r"\[\d+\]", "", path)


# -- writing ------------------------------------------------------------------


def dump_config(config: Config) -> str:
    """The TOML text of ``config``; ``parse_config(tomllib.loads(text)) == config``.

    Every key that differs from its default is written (secrets included:
    keep the text private); a section left with no key is left out.
    O(markets + accounts).
    """
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for field in msgspec.structs.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, msgspec.Struct):
            tables.append((f"[{field.name}]", [_changed(value)]))
        elif isinstance(value, tuple) and value and isinstance(value[0], msgspec.Struct):
            tables.append((f"[[{field.name}]]", [msgspec.to_builtins(v) for v in value]))
        elif value is not None and value != field.default:
            lines.append(f"{field.name} = {_toml_value(value)}")  # before every table
    if lines:
        lines.append("")
    for header, items in tables:
        for table in items:
            keys = [f"{key} = {_toml_value(v)}" for key, v in table.items() if v is not None]
            if keys:
                lines += [header, *keys, ""]
    return "\n".join(lines)


def _changed(section: msgspec.Struct) -> dict[str, Any]:
    """The keys of ``section`` whose values differ from their defaults, as TOML values."""
    out: dict[str, Any] = {}
    for field in msgspec.structs.fields(section):
        value = getattr(section, field.name)
        if field.default is msgspec.NODEFAULT or value != field.default:
            out[field.name] = msgspec.to_builtins(value)
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) in (int, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: { "USD" = "100", ... }
        return "{" + ", ".join(f"{_toml_str(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_str(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
