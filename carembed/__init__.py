"""carembed: the car embedding model shared by the indexer and the service.

Holds the model definition (backbones, pooling, heads), its preprocessing, the servable
artifact format and the image loader. It never imports Lightning or ``training``.
"""
