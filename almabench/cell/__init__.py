"""One cell end to end: everything its numbers depend on (config, stream, models, sparsity, training, evaluation,
the run itself and its checkpoint). The code fingerprint recorded in every result hashes this layer, data/ and
methods/ (results.provenance): a change here is a change in what a cell computes."""
