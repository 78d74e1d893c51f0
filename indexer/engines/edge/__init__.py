"""The embedded store engine: Qdrant Edge in this process, with the alias file and the model
copies in the store folder."""
