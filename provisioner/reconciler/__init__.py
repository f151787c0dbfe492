"""Level-triggered reconciliation: observe (one query, one Docker call) -> plan (pure) -> act."""

from provisioner.reconciler.act import ActionResult, act
from provisioner.reconciler.model import Action, Kind, Observed
from provisioner.reconciler.observe import observe
from provisioner.reconciler.plan import Policy, plan

__all__ = ["Action", "ActionResult", "Kind", "Observed", "Policy", "act", "observe", "plan"]
