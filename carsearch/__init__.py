"""The ``carsearch`` command: one entry point for the model, training, indexing and serving."""
