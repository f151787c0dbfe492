"""The three wire formats the simulator speaks over the shared `SimState`.

Each handler maps (action, params) to a `Reply`, rendering `SimError` reasons as that protocol's
documented error codes (see /work/shared/docs/sms-providers.md). Callers hold the state lock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from provisioner.simulator import code_spaces as sim_codes
from provisioner.simulator import dialects
from provisioner.simulator.dialects import Dialect
from provisioner.simulator.state import OPEN, Activation, SimError, SimState

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = JSON


def as_json(data: object, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data))


def _decimal(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


def _num(value: str) -> int | str:
    return int(value) if value.isdigit() else value


ISO_NUMBERS = {"RUB": 643, "USD": 840, "EUR": 978}


def _currency_field(state: SimState, key: str) -> dict[str, str]:
    """The account's currency in a balance reply, when the simulator account names one."""
    currency = state.currency_of(key)
    return {"currency": currency} if currency else {}


def _iso_number(state: SimState, key: str, usual: int) -> int:
    currency = state.currency_of(key)
    return ISO_NUMBERS.get(currency, usual) if currency else usual


# --- SMS-MAN -------------------------------------------------------------------------------

_SMS_MAN_ERRORS = {
    "no_key": ("wrong_token", {"token": "Wrong token!"}),
    "bad_key": ("wrong_token", {"token": "Wrong token!"}),
    "no_numbers": ("no_numbers", "No numbers"),
    "price_above": ("no_numbers", "No numbers at this price"),
    "no_balance": ("balance", "Not enough balance"),
    "no_activation": ("wrong_request_id", "Request not found"),
}


def sms_man_error(code: str, message: object = "") -> Reply:
    return as_json({"success": False, "error_code": code, "error_msg": message or code})


def _sms_man_request(act: Activation) -> dict:
    return {
        "request_id": int(act.id),
        "country_id": _num(act.country),
        "application_id": _num(act.service),
        "number": act.phone.lstrip("+"),
    }


def sms_man(state: SimState, action: str, params: dict[str, str]) -> Reply:
    try:
        key = state.check_key(params.get("token"))
        if action == "get-balance":
            return as_json({"balance": f"{state.balances[key]:.2f}", **_currency_field(state, key)})
        if action == "limits":
            return as_json(
                [
                    {"application_id": s, "country_id": c, "numbers": str(o.count)}
                    for (s, c), o in state.offers_of("sms_man").items()
                    if params.get("country_id", c) == c and params.get("application_id", s) == s
                ]
            )
        if action == "get-prices":
            prices: dict[str, dict] = {}
            for (s, c), o in state.offers_of("sms_man").items():
                if params.get("country_id", c) == c:
                    prices.setdefault(c, {})[s] = {"cost": f"{o.price:.2f}", "count": o.count}
            return as_json(prices)
        if action in ("applications", "countries"):
            return as_json(sim_codes.sms_man_list(action))
        if action == "get-number":
            service, country = params.get("application_id", ""), params.get("country_id", "")
            max_price = params.get("maxPrice")
            if max_price is not None and not max_price.isdigit():
                return sms_man_error("wrong_max_price", "maxPrice must be an integer")
            if params.get("currency", "RUB") not in ("RUB", "USD", "EUR"):
                return sms_man_error("wrong_currency", "currency must be RUB, USD or EUR")
            act = state.buy("sms_man", key, service, country, _decimal(max_price))
            return as_json(_sms_man_request(act))
        if action == "get-sms":
            act = state.get(key, params.get("request_id", ""))
            if act.status in ("code", "finished"):
                return as_json({**_sms_man_request(act), "sms_code": act.code})
            if act.status == "waiting":
                return as_json(
                    {"request_id": int(act.id), "error_code": "wait_sms", "error_msg": "Still waiting..."}
                )
            return sms_man_error("wrong_status", f"Request is {act.status}")
        if action == "set-status":
            act_id, status = params.get("request_id", ""), params.get("status", "")
            if status == "ready":
                state.get(key, act_id)
            elif status == "close":
                state.finish(key, act_id, honour_min=False)
            elif status in ("reject", "used"):
                state.cancel(key, act_id, honour_min=False)
            else:
                return sms_man_error("wrong_status", "Unknown status")
            return as_json({"request_id": int(act_id), "success": True})
        return Reply(404, "Not found", TEXT)
    except SimError as exc:
        if exc.reason == "bad_service":
            return Reply(400, "Wrong application ID", TEXT)
        if exc.reason == "bad_country":
            return sms_man_error("wrong_country", {"country_id": "Wrong country ID"})
        code, message = _SMS_MAN_ERRORS.get(exc.reason, ("wrong_status", f"Wrong status ({exc.reason})"))
        return sms_man_error(code, message)


# --- OnlineSim -----------------------------------------------------------------------------

_ONLINESIM_ERRORS = {
    "no_key": "ERROR_NO_KEY",
    "bad_key": "ERROR_WRONG_KEY",
    "bad_service": "ERROR_NO_SERVICE",
    "bad_country": "ERROR_PARAMS",
    "no_numbers": "WARNING_NO_NUMS",
    "price_above": "WARNING_NO_NUMS",
    "no_balance": "WARNING_LOW_BALANCE",
    "too_early": "NO_COMPLETE_TZID",
    "no_activation": "ERROR_WRONG_TZID",
    "already": "ERROR_WRONG_TZID",
    "finished": "ERROR_WRONG_TZID",
    "bad_status": "ERROR_WRONG_TZID",
}


def onlinesim_error(code: str) -> Reply:
    return as_json({"response": code})


def _onlinesim_state(state: SimState, act: Activation, to_code: bool) -> dict:
    now = state.now()
    response = {
        "waiting": "TZ_INPOOL" if now < act.number_at else "TZ_NUM_WAIT",
        "code": "TZ_NUM_ANSWER",
        "finished": "TZ_OVER_OK",
        "cancelled": "TZ_OVER_OK",
        "expired": "TZ_OVER_EMPTY",
    }[act.status]
    item: dict = {
        "country": _num(act.country),
        "sum": float(act.price),
        "service": act.service,
        "response": response,
        "tzid": int(act.public_id or act.id),
        "time": max(0, int(act.bought_at + state.config.lifetime_s - now)),
        "msg": (act.code if to_code else act.text) if act.code else False,
    }
    if response != "TZ_INPOOL":
        item["number"] = act.phone
    return item


def _onlinesim_stats(state: SimState, country: str) -> dict:
    """One country of getNumbersStats: its name, calling code and the services sold there."""
    names = sim_codes.CODE_SPACES["onlinesim"].services
    services = {
        f"service_{s}": {"count": o.count, "popular": True, "code": _num(c), "price": float(o.price),
                         "id": i, "service": names.get(s, (s,))[0], "slug": s}
        for i, ((s, c), o) in enumerate(state.offers_of("onlinesim").items())
        if c == country
    }  # fmt: skip
    name = sim_codes.CODE_SPACES["onlinesim"].countries.get(country, (f"country {country}",))[0]
    return {"name": name, "position": 1, "code": _num(country), "services": services}


def onlinesim(state: SimState, method: str, params: dict[str, str], authorization: str | None) -> Reply:
    bearer = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
    try:
        key = state.check_key(params.get("apikey") or bearer)
        if method == "getBalance":
            frozen = sum(
                (a.price for a in state.activations.values() if a.key == key and a.status in OPEN), Decimal()
            )
            return as_json(
                {"response": 1, "balance": f"{state.balances[key]:.2f}", "zbalance": float(frozen),
                 **_currency_field(state, key)}
            )  # fmt: skip
        if method == "getNumbersStats":
            country = params.get("country", "")
            if country == "all":
                codes = sim_codes.CODE_SPACES["onlinesim"].countries
                return as_json({c: _onlinesim_stats(state, c) for c in codes})
            return as_json(_onlinesim_stats(state, country))
        if method == "getNum":
            act = state.buy("onlinesim", key, params.get("service", ""), params.get("country", "7"), None)
            reply: dict = {"response": 1, "tzid": int(act.id)}
            if params.get("number") in ("true", "1") and state.now() >= act.number_at:
                reply["number"] = act.phone
            return as_json(reply)
        if method == "getState":
            to_code = params.get("message_to_code") == "1"
            if params.get("tzid"):
                acts = [state.get(key, params["tzid"])]
            else:
                acts = [
                    a for a in state.activations.values()
                    if a.key == key and a.protocol == "onlinesim" and a.status in OPEN
                ]  # fmt: skip
            if not acts:
                return onlinesim_error("ERROR_NO_OPERATIONS")
            return as_json([_onlinesim_state(state, a, to_code) for a in acts])
        if method == "setOperationRevise":
            act = state.retry(key, params.get("tzid", ""))
            if state.config.onlinesim_revise_new_tzid:
                state.reissue(act)
            return as_json({"response": 1, "tzid": int(act.public_id or act.id)})
        if method == "setOperationOk":
            act = state.finish(key, params.get("tzid", ""))
            return as_json({"response": 1, "tzid": int(act.public_id or act.id)})
        return Reply(404, "Not found", TEXT)
    except SimError as exc:
        if exc.reason == "no_activation" and method == "getState":
            return onlinesim_error("ERROR_NO_OPERATIONS")
        return onlinesim_error(_ONLINESIM_ERRORS.get(exc.reason, "ERROR_PARAMS"))


# --- SMS-Activate --------------------------------------------------------------------------


def text(body: str, status: int = 200) -> Reply:
    return Reply(status, body, TEXT)


def token_reply(dialect: Dialect, token: str) -> Reply:
    """A token (`TOKEN[:data]`) as this dialect sends it: HTTP 200, or its status code."""
    return text(token, dialects.status_of(dialect, token))


def sms_activate(state: SimState, params: dict[str, str]) -> Reply:
    action = params.get("action", "")
    dialect = dialects.get(state.dialect_of(params.get("api_key")))
    try:
        key = state.check_key(params.get("api_key"))
        if action == "getBalance":
            return text(f"ACCESS_BALANCE:{state.balances[key]:.2f}")
        if action == "getPrices":
            offers = state.offers_of("sms_activate")
            services = sim_codes.CODE_SPACES["sms_activate"].services
            return as_json(
                dialects.price_list(dialect, offers, services, params.get("country"), params.get("service"))
            )
        if action == "getNumbersStatus":
            country = params.get("country", "")
            offers = state.offers_of("sms_activate").items()
            return as_json({f"{s}_0": o.count for (s, c), o in offers if c == country})
        if action == "getServicesList":
            return as_json(sim_codes.sms_activate_services())
        if action == "getCountries":
            return as_json(sim_codes.sms_activate_countries())
        if action in ("getNumber", "getNumberV2"):
            if action == "getNumberV2" and not dialect.number_v2:
                return token_reply(dialect, "BAD_ACTION")
            service, country = params.get("service", ""), params.get("country", "")
            max_price = _decimal(params.get("maxPrice"))
            act = state.buy("sms_activate", key, service, country, max_price, dialect.charge)
            if action == "getNumber":
                return text(f"ACCESS_NUMBER:{act.id}:{act.phone.lstrip('+')}")
            return as_json(
                {"activationId": int(act.id), "phoneNumber": act.phone.lstrip("+"),
                 "activationCost": float(act.price), "currency": _iso_number(state, key, dialect.currency),
                 "countryCode": act.country, "canGetAnotherSms": True, "activationOperator": "any"}
            )  # fmt: skip
        if action == "getStatus":
            act = state.get(key, params.get("id", ""))
            if act.status in ("code", "finished"):
                return text(f"STATUS_OK:{act.code}")
            if act.status == "waiting":
                return text(
                    f"STATUS_WAIT_RETRY:{act.previous_code}" if act.previous_code else "STATUS_WAIT_CODE"
                )
            if act.status == "expired" and dialect.http_errors:
                return token_reply(dialect, "NO_ACTIVATION")  # expired ids are forgotten
            return text(dialect.cancelled_token)
        if action == "setStatus":
            return _sms_activate_status(state, key, params.get("id", ""), params.get("status", ""))
        if action == "getActiveActivations" and state.config.sms_activate_lists_activations:
            return _sms_activate_active(state, key, params)
        return token_reply(dialect, "BAD_ACTION")
    except SimError as exc:
        if exc.reason == "price_above":
            return token_reply(dialect, f"WRONG_MAX_PRICE:{exc.data['price']:.2f}")
        if exc.reason == "too_early":
            wait = int(state.config.min_cancel_s)
            if dialect.http_errors or state.config.early_cancel_style == "http409":
                body = {"title": "EARLY_CANCEL_DENIED", "info": {"minActivationTime": wait}}
                return as_json(body, status=403 if dialect.http_errors else 409)
            return text("EARLY_CANCEL_DENIED")
        if exc.reason == "no_activation" and action == "getStatus":
            return token_reply(dialect, "NO_ACTIVATION")
        return token_reply(dialect, dialects.token_for(dialect, exc.reason))


def _sms_activate_active(state: SimState, key: str, params: dict[str, str]) -> Reply:
    """getActiveActivations: the account's open activations, paged by start/limit (at most 100)."""
    start, limit = int(params.get("start") or 0), min(int(params.get("limit") or 100), 100)
    acts = [
        a
        for a in state.activations.values()
        if a.key == key and a.protocol == "sms_activate" and a.status in OPEN
    ]
    rows = [
        {
            "activationId": a.id,
            "serviceCode": a.service,
            "phoneNumber": a.phone.lstrip("+"),
            "activationCost": f"{a.price:.2f}",
            "activationStatus": "2" if a.code else "4",
            "smsCode": [a.code] if a.code else None,
            "smsText": [a.text] if a.code else None,
            "activationTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a.bought_wall)),
            "countryCode": a.country,
            "canGetAnotherSms": "1",
            **({"currency": _iso_number(state, key, 643)} if state.currency_of(key) else {}),
        }
        for a in acts[start : start + limit]
    ]
    return as_json({"status": "success", "activeActivations": rows})


def _sms_activate_status(state: SimState, key: str, act_id: str, status: str) -> Reply:
    if status == "1":
        act = state.get(key, act_id)
        if act.status != "waiting":
            raise SimError("bad_status")
        return text("ACCESS_READY")
    if status == "3":
        state.retry(key, act_id)
        return text("ACCESS_RETRY_GET")
    if status == "6":
        state.finish(key, act_id)
        return text("ACCESS_ACTIVATION")
    if status in state.config.sms_activate_cancel_statuses:
        state.cancel(key, act_id)
        return text("ACCESS_CANCEL")
    raise SimError("bad_status")


# --- faults rendered per protocol ----------------------------------------------------------

NO_NUMBERS = {"sms_man": "no_numbers", "onlinesim": "WARNING_NO_NUMS", "sms_activate": "NO_NUMBERS"}


def error_reply(protocol: str, code: str, dialect: str = "classic") -> Reply:
    """`code` rendered the way `protocol` (in that SMS-Activate `dialect`) reports errors."""
    if protocol == "sms_man":
        return sms_man_error(code, code.replace("_", " ").capitalize())
    if protocol == "onlinesim":
        return onlinesim_error(code)
    return token_reply(dialects.get(dialect), code)


def rate_limit_reply(protocol: str) -> Reply:
    if protocol == "onlinesim":
        return onlinesim_error("INTERVAL_CONCURRENT_REQUESTS_ERROR")
    return Reply(429, "Too Many Requests", TEXT)
