"""The training stages' pieces: contrastive model and loss, Trainer run folders, cost plans."""
