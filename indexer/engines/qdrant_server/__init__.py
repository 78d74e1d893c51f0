"""The production store engine: a Qdrant server or cluster through qdrant-client, with Qdrant's
own aliases and the model copies in a collection of the server."""
