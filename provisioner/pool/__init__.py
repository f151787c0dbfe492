"""The warm pool: observe (one query, one Docker list) -> size and plan (pure) -> act."""

from provisioner.pool.plan import PoolAction, PoolDevice, PoolObserved, plan_pool
from provisioner.pool.size import Demand, Sizing, Target, bounds, pool_target, pool_targets

__all__ = [
    "Demand",
    "PoolAction",
    "PoolDevice",
    "PoolObserved",
    "Sizing",
    "Target",
    "bounds",
    "plan_pool",
    "pool_target",
    "pool_targets",
]
