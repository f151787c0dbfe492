"""The reconcile rules: small pure functions ``rule(item, context) -> Verdict | None``.

A rule returns None when it does not apply to the item; a Verdict otherwise, with its actions and
whether the later rules still look at the item. ``reconciler.plan`` lists them in order.
"""
