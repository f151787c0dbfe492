"""provisioner: Prefect 3 workflows that provision phone-verified device sessions.

One installed namespace: the flows/, tasks/ and providers/ folders the design card fixes at the
repository top, and this package for everything else (see docs/architecture.md).
"""
