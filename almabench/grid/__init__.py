"""Many cells: specs and the grid they expand to, the plan (what is done, what is left), the per-cell job every
backend calls (job.run_and_store), locks, progress and live events. Nothing here changes a cell's numbers."""
