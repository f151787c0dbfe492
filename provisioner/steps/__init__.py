"""Plain, typed steps of a provision and a release: store + providers + runtime, no Prefect.

The Prefect tasks in tasks/ are thin wrappers over these functions, so each step can be tested and
reused (by the reconciler too) without a flow.
"""
