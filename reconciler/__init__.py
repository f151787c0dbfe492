"""Level-triggered reconciliation: observe (one query, one Docker call) -> plan (pure) -> act."""

from reconciler.act import ActionResult, act
from reconciler.model import Action, Kind, Observed
from reconciler.observe import observe
from reconciler.plan import Policy, plan

__all__ = ["Action", "ActionResult", "Kind", "Observed", "Policy", "act", "observe", "plan"]
