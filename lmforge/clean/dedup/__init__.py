"""Deduplication across the whole corpus: exact (hash of normalised text) and near (MinHash LSH).

Signatures are computed per document inside the shards (in parallel); the decisions need the
global view and are taken in one process, in input order, so the first of a group is kept.
"""
