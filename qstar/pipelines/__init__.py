"""The pipelines over the layers below: evaluate and compare searches, the improve loop, rules-only pretraining."""
