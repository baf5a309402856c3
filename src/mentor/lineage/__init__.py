"""ATLAS dataset lineage for RLVR data (arXiv 2605.26971): canonicalise, hash, near-duplicates, semantic matching,
attribution, contamination, SCA, quality score Q and DAPO++-style curation. CLI: `mentor data ...` (cli.py).

Modules: canon (canonical text, keys, label aliases), io (streaming readers), minhash (vectorised MinHash, LSH),
semantic (encoders, FAISS index), attribution (the lineage rule), trace (the staged pipeline), contamination,
sca (SCA classes and Q), curate (DAPO++ refill with a ledger), synth (synthetic lineage benchmark).
"""
