"""Every call to Prefect's API (a client's, not the flow/task decorators): flow runs created,
read, cancelled and labelled; artifacts; global concurrency limits; the work pool, work queues and
automations `provisioner deploy` makes. Each deployment name is defined once, in names.

    names         deployment, work pool and work queue names
    orchestrator  the gateway's async client: start a run, cancel an unstarted one (errors mapped)
    runs          flow runs from flows, tasks and reconciliation (sync client)
    artifacts     a session's markdown artifact updated in place; table artifacts
    limits        global concurrency limits: create or resize, hold a slot
    setup         work pool, work queues, the heartbeat automation, registered deployments
"""
