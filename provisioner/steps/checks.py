"""Cheap checks that run before any money is spent.

`validate_request` needs no Docker and no provider: the gateway (422) and the CLI (exit 2) call it
before a run starts. `check_before_spending` is the provision's own first step, before it rents a
number: the device profile exists, the Docker engine answers and both images are present.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.runtime import load_profiles
from provisioner.settings import Settings
from provisioner.settings.model import PROVIDER_NAMES, env_var_for
from provisioner.steps import budgets
from provisioner.steps.deps import Deps
from provisioner.steps.request import ProvisionRequest, ResolvedRequest, price_cap
from provisioner.steps.spend import AboveCeiling
from provisioner.store import repository as repo
from provisioner.values.money import NoRate


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


class InvalidRequest(ValueError):
    """The request cannot be served as it stands; nothing was started or bought."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def validate_request(request: ProvisionRequest, settings: Settings) -> None:
    """Raise InvalidRequest naming each unknown device profile or provider, and a max_price above
    the ceiling (no I/O but the profiles file)."""
    problems: list[Problem] = []
    profiles = load_profiles(settings.docker.profiles_file)
    profile = request.device_profile or settings.docker.default_profile
    if profile not in profiles:
        problems.append(
            Problem(
                "device_profile",
                f"unknown device profile {profile!r}; known: {', '.join(sorted(profiles))} "
                f"(add one in the file named by {env_var_for(('docker', 'profiles_file'))})",
            )
        )
    for name in request.providers or []:
        if name not in PROVIDER_NAMES:
            problems.append(
                Problem("providers", f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
            )
    try:
        price_cap(request, settings)
    except AboveCeiling as exc:
        problems.append(Problem("max_price", str(exc)))
    except NoRate as exc:
        problems.append(
            Problem("max_price", f"cannot compare with the ceiling {settings.spend.max_price}: {exc}")
        )
    if problems:
        raise InvalidRequest(problems)


def check_budget(deps: Deps, session_id: str, plan: ResolvedRequest) -> None:
    """The session owner's budgets can cover one number at the effective cap (no reservation: the
    purchase reserves). Raises BudgetExhausted, so a session nobody could pay for boots no device."""
    with deps.sessions() as db:
        budgets.check(db, deps.settings, repo.get_session(db, session_id).owner, plan.max_price)


def check_before_spending(deps: Deps, plan: ResolvedRequest) -> None:
    """The profile exists, the Docker engine answers, the device and stream images are present.
    Raises runtime errors (UnknownProfile, EngineUnreachable, ImageMissing) that say what to fix."""
    runtime = deps.runtime
    runtime.check_engine(runtime.profile(plan.device_profile))
