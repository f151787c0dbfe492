"""Each protocol's own code space in the simulator, and the listing endpoints that publish it.

The three protocols do not share codes: SMS-Activate names services by short codes (`tg`) and
countries by its own numbers (`0` Russia, `2` Kazakhstan), OnlineSim by slugs (`telegram`) and
calling codes (`7`, `77` Kazakhstan, `44`), SMS-MAN by numeric ids (with a title and a code). A
purchase with a code outside the protocol's space fails the way that protocol fails, so a client
that sends a foreign code fails in tests as it would in production.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeSpace:
    services: dict[str, tuple[str, str]]  # native code -> (title, secondary code)
    countries: dict[str, tuple[str, str]]  # native code -> (English name, secondary code)


CODE_SPACES: dict[str, CodeSpace] = {
    "sms_activate": CodeSpace(
        services={
            "tg": ("Telegram", ""),
            "wa": ("Whatsapp", ""),
            "go": ("Google,youtube,Gmail", ""),
            "vk": ("Vkontakte", ""),
            "fb": ("facebook", ""),
            "ig": ("Instagram+Threads", ""),
            "ot": ("Any other", ""),
            "qb": ("Quibbit", ""),  # in no canonical table: listed as unmapped
        },
        countries={
            "0": ("Russia", ""),
            "1": ("Ukraine", ""),
            "2": ("Kazakhstan", ""),
            "12": ("USA (virtual)", ""),
            "16": ("United Kingdom", ""),
            "187": ("USA", ""),
        },
    ),
    "onlinesim": CodeSpace(
        services={
            "telegram": ("Telegram", ""),
            "whatsapp": ("WhatsApp", ""),
            "google": ("Google", ""),
            "vkcom": ("VK", ""),
            "facebook": ("Facebook", ""),
        },
        countries={
            "7": ("Russia", ""),
            "77": ("Kazakhstan", ""),
            "380": ("Ukraine", ""),
            "44": ("United Kingdom", ""),
            "1": ("USA", ""),
        },
    ),
    "sms_man": CodeSpace(
        services={
            "1": ("Vkontakte", "vk"),
            "2": ("WhatsApp", "wa"),
            "3": ("Telegram", "tg"),
            "4": ("Google, YouTube, Gmail", "go"),
            "5": ("Facebook", "fb"),
            "99": ("Any other", "ot"),
        },
        countries={
            "1": ("Russia", "ru"),
            "2": ("Kazakhstan", "kz"),
            "3": ("Ukraine", "ua"),
            "4": ("United Kingdom", "gb"),
            "5": ("USA", "us"),
        },
    ),
}


# Pairs a protocol does not sell (its listing names the service, just not in that country).
NOT_SOLD = {("onlinesim", "telegram", "77")}  # no Telegram numbers in Kazakhstan at OnlineSim


def offer_keys(protocol: str) -> list[tuple[str, str]]:
    """Every (service, country) a protocol sells by default: all pairs of its code space but NOT_SOLD."""
    space = CODE_SPACES[protocol]
    return [(s, c) for s in space.services for c in space.countries if (protocol, s, c) not in NOT_SOLD]


# --- listing replies ----------------------------------------------------------------------


def sms_activate_services() -> dict:
    """getServicesList."""
    items = CODE_SPACES["sms_activate"].services.items()
    return {"status": "success", "services": [{"code": c, "name": title} for c, (title, _) in items]}


def sms_activate_countries() -> dict:
    """getCountries: keyed by the protocol's country number."""
    return {
        code: {"id": int(code), "rus": name, "eng": name, "chn": name, "visible": 1, "retry": 1}
        for code, (name, _) in CODE_SPACES["sms_activate"].countries.items()
    }


def sms_man_list(kind: str) -> dict:
    """`applications` or `countries`: objects keyed by id, each with id, title and code."""
    space = CODE_SPACES["sms_man"]
    table = space.services if kind == "applications" else space.countries
    return {code: {"id": int(code), "title": title, "code": short} for code, (title, short) in table.items()}
