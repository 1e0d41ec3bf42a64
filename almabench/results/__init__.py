"""Result files: their paths, atomic writes, validation (schema, validate), checkpoints, and the provenance
(environment, code and data fingerprints) each result records."""
