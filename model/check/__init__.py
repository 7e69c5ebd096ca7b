"""The checkers: each holds a store, or the model itself, to the spec in `runbound.model`.

They import the spec and never the stores (`runbound.reference`) or the harness; a store
reaches them only as a factory (`runbound.model.protocol.StoreFactory`).
"""
