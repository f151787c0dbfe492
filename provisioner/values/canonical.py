"""Canonical names of a request: services by name (`telegram`), countries by ISO 3166 alpha-2 (`RU`).

A request means the same at every provider: `providers.catalog` turns these names into each
provider's own codes. A caller who knows a provider's code can still pass it as
`<provider>:<code>` (e.g. `sms_activate:tg`); it then goes to that provider only, as is.
This module holds the built-in table (common services, every country), title matching and the
validation used by the request model, with close matches for a name it does not know.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

from provisioner.values.countries import COUNTRY_TABLE, EXTRA_NAMES

PROVIDER_CODE = re.compile(r"^(sms_man|onlinesim|sms_activate):([A-Za-z0-9_.-]{1,64})$")
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Service:
    name: str  # canonical
    title: str
    aliases: tuple[str, ...]  # other names providers use in their titles
    sms_activate: str  # the SMS-Activate protocol's code
    onlinesim: str  # OnlineSim's slug


def _s(name: str, title: str, sms_activate: str, onlinesim: str = "", *aliases: str) -> Service:
    return Service(name, title, aliases, sms_activate, onlinesim or name)


# The common services. SMS-MAN's numeric ids are learned from its `applications` listing.
SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        _s("telegram", "Telegram", "tg"),
        _s("whatsapp", "WhatsApp", "wa"),
        _s("google", "Google", "go", "", "gmail", "youtube", "google youtube gmail"),
        _s("facebook", "Facebook", "fb"),
        _s("instagram", "Instagram", "ig", "", "instagram threads"),
        _s("twitter", "Twitter", "tw", "", "x", "x twitter", "twitter x"),
        _s("vk", "VK", "vk", "vkcom", "vkontakte", "vk com"),
        _s("viber", "Viber", "vi"),
        _s("wechat", "WeChat", "wb"),
        _s("tiktok", "TikTok", "lf", "", "douyin", "tiktok douyin"),
        _s("discord", "Discord", "ds"),
        _s("microsoft", "Microsoft", "mm", "", "hotmail", "outlook"),
        _s("yahoo", "Yahoo", "mb"),
        _s("amazon", "Amazon", "am"),
        _s("uber", "Uber", "ub"),
        _s("apple", "Apple", "wx"),
        _s("netflix", "Netflix", "nf"),
        _s("openai", "OpenAI", "dr", "", "chatgpt"),
        _s("signal", "Signal", "bw"),
        _s("line", "LINE", "me", "", "line messenger"),
        _s("kakaotalk", "KakaoTalk", "kt", "", "kakao"),
        _s("tinder", "Tinder", "oi"),
        _s("snapchat", "Snapchat", "fu"),
        _s("linkedin", "LinkedIn", "tn"),
        _s("paypal", "PayPal", "ts"),
        _s("airbnb", "Airbnb", "uk"),
        _s("steam", "Steam", "mt"),
        _s("ok", "Odnoklassniki", "ok", "odnoklassniki", "ok ru"),
        _s("mailru", "Mail.ru", "ma", "mailru", "mail ru", "mail ru group"),
        _s("yandex", "Yandex", "ya"),
        _s("avito", "Avito", "av"),
        _s("ozon", "Ozon", "sg"),
        _s("wildberries", "Wildberries", "uu"),
        _s("other", "Any other", "ot", "other", "any other", "others"),
    )
}


@dataclass(frozen=True)
class Country:
    iso: str  # ISO 3166-1 alpha-2
    name: str
    calling_code: str
    other_names: tuple[str, ...]


COUNTRIES: dict[str, Country] = {
    iso: Country(iso, row[0], row[1], tuple(row[2:]) + EXTRA_NAMES.get(iso, ()))
    for iso, row in COUNTRY_TABLE.items()
}


def normalize(title: str) -> str:
    """A title reduced for matching: accents dropped, lowercase, letters and digits only."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


def _index(pairs: list[tuple[str, str]]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, canonical in pairs:
        index.setdefault(normalize(name), canonical)
    return index


_SERVICE_NAMES = _index(
    [(n, s.name) for s in SERVICES.values() for n in (s.name, s.title, *s.aliases)]
)  # fmt: skip
_COUNTRY_NAMES = _index(
    [(n, c.iso) for c in COUNTRIES.values() for n in (c.name, *c.other_names)]
)  # fmt: skip


def _match(title: str, index: dict[str, str]) -> tuple[str, int] | None:
    """(canonical, score): 2 when the whole title matches, 1 when its first part does
    ("USA (virtual)", "Google,youtube,Gmail")."""
    whole = normalize(title)
    if whole in index:
        return index[whole], 2
    first = normalize(re.split(r"[,(/|;]", title, maxsplit=1)[0])
    if first and first in index:
        return index[first], 1
    return None


def match_service(title: str) -> tuple[str, int] | None:
    return _match(title, _SERVICE_NAMES)


def match_country(title: str) -> tuple[str, int] | None:
    return _match(title, _COUNTRY_NAMES)


def provider_code(value: str) -> tuple[str, str] | None:
    """(provider, code) for a provider-specific value such as `sms_activate:tg`, else None."""
    found = PROVIDER_CODE.match(value)
    return (found.group(1), found.group(2)) if found else None


def _close(value: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(value, choices, n=5, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else ""


def check_service(value: str) -> str:
    """A canonical service name (case-insensitive) or `<provider>:<code>`; ValueError otherwise,
    listing the close matches."""
    value = value.strip()
    if provider_code(value):
        return value
    name = value.lower()
    if name in SERVICES:
        return name
    by_title = _SERVICE_NAMES.get(normalize(value))
    if by_title:
        return by_title
    raise ValueError(
        f"unknown service {value!r}{_close(name, list(SERVICES))} "
        "(a canonical name such as telegram, or <provider>:<code> such as sms_activate:tg)"
    )


def check_country(value: str) -> str:
    """An ISO 3166 alpha-2 code (case-insensitive) or `<provider>:<code>`; ValueError otherwise."""
    value = value.strip()
    if provider_code(value):
        return value
    if value.upper() in COUNTRIES:
        return value.upper()
    by_name = _COUNTRY_NAMES.get(normalize(value))
    if by_name:
        return by_name
    names = {n.lower(): c.iso for c in COUNTRIES.values() for n in (c.name, *c.other_names)}
    near = dict.fromkeys(
        names[n] for n in difflib.get_close_matches(value.lower(), list(names), n=5, cutoff=0.6)
    )
    hint = f"; did you mean {', '.join(f'{iso} ({COUNTRIES[iso].name})' for iso in near)}?" if near else ""
    raise ValueError(
        f"unknown country {value!r}{hint} (an ISO 3166 alpha-2 code such as RU, KZ, GB, "
        "or <provider>:<code> such as sms_activate:0)"
    )
