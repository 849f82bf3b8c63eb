"""Deduplication across the whole corpus: exact (hash of normalised text) and near (MinHash LSH),
in FineWeb's four stages (stages.py), each run as tasks over parts or buckets.
"""
