"""The workflow: lifecycle, policy, and one service per noun of the consultation.

Every service derives from ``base.Service``, which owns the transaction, the
visibility checks and the audit append (the only door to the audit log). A
service never reaches into another's helpers; what two services share is in
``base`` or ``policy``.
"""
