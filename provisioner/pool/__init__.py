"""The warm device pool: observe (one query, one Docker list) -> plan (pure) -> act."""

from provisioner.pool.plan import PoolAction, PoolDevice, PoolObserved, plan_pool, wanted_per_profile

__all__ = ["PoolAction", "PoolDevice", "PoolObserved", "plan_pool", "wanted_per_profile"]
