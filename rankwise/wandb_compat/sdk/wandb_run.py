from client.run import Run

__all__ = ["Run"]
