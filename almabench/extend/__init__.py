"""Your own method, pruner, dataset or model: plugin discovery and loading, the contract check (check-method),
the scaffold (new-method), and the record of which plugin code made a cell (stale)."""
