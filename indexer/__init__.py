"""Embeds a gallery of car photos into a Qdrant collection; rebuilds after retraining."""
