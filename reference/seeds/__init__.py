"""Faithful replicas of the two seed registries (`shared/seed-systems.md`), defects
included, and the adapters that map each onto `runbound.model.protocol.RunStore`.

A replica keeps its original's API; only its adapter speaks runbound's. Everything an
adapter does is a mapping (statuses, errors, times), never a fix.
"""
