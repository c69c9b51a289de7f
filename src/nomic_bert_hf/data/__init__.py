"""Data for every stage: the shipped corpus, Hub datasets, MLM sequences, contrastive pairs."""
