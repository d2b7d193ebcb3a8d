"""Restoration: image + diagnosis + references + plan -> image. Imports nothing heavy."""

from restorer.base import DEFAULT_RESTORER, RESTORERS, ReferenceImage, RestoreOutput, Restorer, load_restorer
from restorer.plan import RESTORE_ORDER, Operation, Plan, plan_from_diagnosis, plan_from_record

__all__ = [
    "DEFAULT_RESTORER",
    "RESTORERS",
    "RESTORE_ORDER",
    "Operation",
    "Plan",
    "ReferenceImage",
    "RestoreOutput",
    "Restorer",
    "load_restorer",
    "plan_from_diagnosis",
    "plan_from_record",
]
