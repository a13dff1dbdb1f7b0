"""DashCLIP: multimodal product and query embeddings trained without engagement logs."""

__version__ = "0.1.0"
