"""Train: versioned instruction datasets, LoRA fine-tuning on Ray Train, evaluation, registry, promotion."""
