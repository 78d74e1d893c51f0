"""Offline training and evaluation of the car similarity model (PyTorch Lightning)."""
